-- The core schema (DESIGN.md §3). Every tenant table carries tenant_id,
-- defaulting to the tenant in context, and tenant_id leads every primary
-- key, unique constraint, foreign key and index: no cross-tenant existence
-- oracle through constraint violations, and the layout Citus needs.
-- Row-level security is installed by the generated migration that follows.

-- +goose Up
CREATE TABLE bulkhead.tenants (
    id         uuid PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    region     text NOT NULL DEFAULT 'default' CHECK (region ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE bulkhead.entities (
    tenant_id    uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('user', 'agent', 'external')),
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    metadata     jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE bulkhead.users (
    tenant_id     uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL,
    email         text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    password_hash text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX users_email_key ON bulkhead.users (tenant_id, lower(email));

CREATE TABLE bulkhead.agents (
    tenant_id     uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL,
    owner_id      uuid NOT NULL,
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    bio           text NOT NULL DEFAULT '',
    settings      jsonb NOT NULL DEFAULT '{}',
    -- Opaque until field encryption lands: ciphertext envelopes, never plaintext by contract.
    system_prompt bytea,
    secrets       bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, owner_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE bulkhead.delegations (
    tenant_id    uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    agent_id     uuid NOT NULL,
    principal_id uuid NOT NULL,
    scopes       text[] NOT NULL DEFAULT '{}',
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CHECK (agent_id <> principal_id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES bulkhead.agents (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, principal_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE bulkhead.worlds (
    tenant_id  uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id         uuid NOT NULL,
    owner_id   uuid NOT NULL,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);

-- An external platform (a Discord guild, a Telegram chat): never the tenant.
CREATE TABLE bulkhead.message_servers (
    tenant_id   uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    owner_id    uuid NOT NULL,
    platform    text NOT NULL CHECK (length(platform) BETWEEN 1 AND 64),
    external_id text NOT NULL CHECK (length(external_id) BETWEEN 1 AND 256),
    name        text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, platform, external_id),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE bulkhead.message_server_agents (
    tenant_id         uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    message_server_id uuid NOT NULL,
    agent_id          uuid NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, message_server_id, agent_id),
    FOREIGN KEY (tenant_id, message_server_id) REFERENCES bulkhead.message_servers (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, agent_id) REFERENCES bulkhead.agents (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE bulkhead.rooms (
    tenant_id         uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id                uuid NOT NULL,
    world_id          uuid NOT NULL,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    message_server_id uuid,
    channel_id        text CHECK (length(channel_id) <= 256),
    is_open           boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, world_id) REFERENCES bulkhead.worlds (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, message_server_id) REFERENCES bulkhead.message_servers (tenant_id, id) ON DELETE SET NULL (message_server_id)
);
CREATE UNIQUE INDEX rooms_channel_key ON bulkhead.rooms (tenant_id, message_server_id, channel_id) WHERE channel_id IS NOT NULL;

CREATE TABLE bulkhead.participants (
    tenant_id uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    room_id   uuid NOT NULL,
    entity_id uuid NOT NULL,
    role      text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, room_id, entity_id),
    FOREIGN KEY (tenant_id, room_id) REFERENCES bulkhead.rooms (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, entity_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE bulkhead.memories (
    tenant_id  uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id         uuid NOT NULL,
    room_id    uuid NOT NULL,
    author_id  uuid NOT NULL,
    kind       text NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'fact')),
    content    text NOT NULL CHECK (length(content) <= 100000),
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, room_id) REFERENCES bulkhead.rooms (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, author_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE
);
-- Room history, newest first, keyset-paginated on (created_at, id).
CREATE INDEX memories_history_idx ON bulkhead.memories (tenant_id, room_id, created_at DESC, id DESC);

CREATE TABLE bulkhead.documents (
    tenant_id    uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    owner_id     uuid NOT NULL,
    room_id      uuid,
    visibility   text NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'room', 'tenant')),
    title        text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
    content      text NOT NULL DEFAULT '',
    confidential boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CHECK ((visibility = 'room') = (room_id IS NOT NULL)),
    FOREIGN KEY (tenant_id, owner_id) REFERENCES bulkhead.entities (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, room_id) REFERENCES bulkhead.rooms (tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE bulkhead.chunks (
    tenant_id   uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    document_id uuid NOT NULL,
    ord         integer NOT NULL CHECK (ord >= 0),
    content     text NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, document_id, ord),
    FOREIGN KEY (tenant_id, document_id) REFERENCES bulkhead.documents (tenant_id, id) ON DELETE CASCADE
);

-- Security events; append-only for the runtime role (INSERT is its only grant).
CREATE TABLE bulkhead.audit_log (
    tenant_id uuid NOT NULL DEFAULT bulkhead.current_tenant() REFERENCES bulkhead.tenants (id) ON DELETE CASCADE,
    id        uuid NOT NULL DEFAULT gen_random_uuid(),
    at        timestamptz NOT NULL DEFAULT now(),
    actor_id  uuid,
    action    text NOT NULL CHECK (length(action) BETWEEN 1 AND 100),
    target    text NOT NULL DEFAULT '',
    detail    jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_log_at_idx ON bulkhead.audit_log (tenant_id, at DESC);

-- +goose Down
DROP TABLE bulkhead.audit_log;
DROP TABLE bulkhead.chunks;
DROP TABLE bulkhead.documents;
DROP TABLE bulkhead.memories;
DROP TABLE bulkhead.participants;
DROP TABLE bulkhead.rooms;
DROP TABLE bulkhead.message_server_agents;
DROP TABLE bulkhead.message_servers;
DROP TABLE bulkhead.worlds;
DROP TABLE bulkhead.delegations;
DROP TABLE bulkhead.agents;
DROP TABLE bulkhead.users;
DROP TABLE bulkhead.entities;
DROP TABLE bulkhead.tenants;
