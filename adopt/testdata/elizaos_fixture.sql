-- A legacy schema modeled on elizaOS: server_id is the tenant column; some
-- participants and memories have none; message_server_agents has no server_id;
-- logs has no primary key. :S servers, :M memories per room (5 rooms per server).
CREATE TABLE servers (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE agents (id uuid PRIMARY KEY, server_id uuid NOT NULL REFERENCES servers(id), name text NOT NULL);
CREATE TABLE entities (id uuid PRIMARY KEY, server_id uuid NOT NULL REFERENCES servers(id), agent_id uuid REFERENCES agents(id), names text[] NOT NULL);
CREATE TABLE worlds (id uuid PRIMARY KEY, server_id uuid NOT NULL REFERENCES servers(id), agent_id uuid REFERENCES agents(id), name text);
CREATE TABLE rooms (id uuid PRIMARY KEY, server_id uuid NOT NULL REFERENCES servers(id), world_id uuid REFERENCES worlds(id), name text, source text);
CREATE TABLE participants (id uuid PRIMARY KEY, server_id uuid REFERENCES servers(id), room_id uuid NOT NULL REFERENCES rooms(id), entity_id uuid NOT NULL REFERENCES entities(id));
CREATE TABLE memories (id uuid PRIMARY KEY, server_id uuid REFERENCES servers(id), room_id uuid NOT NULL REFERENCES rooms(id),
  entity_id uuid REFERENCES entities(id), type text NOT NULL, content text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX memories_server_room ON memories (server_id, room_id, created_at);
CREATE TABLE message_servers (id uuid PRIMARY KEY, name text, source_type text);
CREATE TABLE message_server_agents (message_server_id uuid NOT NULL REFERENCES message_servers(id), agent_id uuid NOT NULL REFERENCES agents(id),
  PRIMARY KEY (message_server_id, agent_id));
CREATE TABLE logs (entity_id uuid, server_id uuid, body text);

INSERT INTO servers SELECT md5('s'||s)::uuid, 'server '||s FROM generate_series(1, :S) s;
INSERT INTO agents SELECT md5('a'||s||'.'||j)::uuid, md5('s'||s)::uuid, 'agent '||j FROM generate_series(1, :S) s, generate_series(1, 2) j;
INSERT INTO entities SELECT md5('e'||s||'.'||j)::uuid, md5('s'||s)::uuid, md5('a'||s||'.1')::uuid, ARRAY['user '||j] FROM generate_series(1, :S) s, generate_series(1, 10) j;
INSERT INTO worlds SELECT md5('w'||s||'.'||j)::uuid, md5('s'||s)::uuid, md5('a'||s||'.1')::uuid, 'world '||j FROM generate_series(1, :S) s, generate_series(1, 2) j;
INSERT INTO rooms SELECT md5('r'||s||'.'||j)::uuid, md5('s'||s)::uuid, md5('w'||s||'.'||(j % 2 + 1))::uuid, 'room '||j, 'discord' FROM generate_series(1, :S) s, generate_series(1, 5) j;
INSERT INTO participants SELECT md5('p'||s||'.'||j||'.'||k)::uuid, CASE WHEN (s + j + k) % 7 = 0 THEN NULL ELSE md5('s'||s)::uuid END,
  md5('r'||s||'.'||j)::uuid, md5('e'||s||'.'||k)::uuid FROM generate_series(1, :S) s, generate_series(1, 5) j, generate_series(1, 3) k;
INSERT INTO memories SELECT md5('m'||s||'.'||j||'.'||k)::uuid, CASE WHEN k % 10 = 0 THEN NULL ELSE md5('s'||s)::uuid END,
  md5('r'||s||'.'||j)::uuid, md5('e'||s||'.'||(k % 10 + 1))::uuid, 'message', 'hello '||(k % 50), timestamptz '2026-01-01' + k * interval '1 second'
  FROM generate_series(1, :S) s, generate_series(1, 5) j, generate_series(1, :M) k;
INSERT INTO message_servers SELECT md5('ms'||i)::uuid, 'guild '||i, 'discord' FROM generate_series(1, 5) i;
INSERT INTO message_server_agents SELECT md5('ms'||(s % 5 + 1))::uuid, md5('a'||s||'.'||j)::uuid FROM generate_series(1, :S) s, generate_series(1, 2) j;
INSERT INTO logs SELECT md5('e'||s||'.1')::uuid, md5('s'||s)::uuid, 'started' FROM generate_series(1, :S) s;
ANALYZE;
