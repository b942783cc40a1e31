package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// openapi serves the OpenAPI 3.1 document built from the route table.
func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, s.OpenAPI())
	return nil
}

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// OpenAPI returns the API's OpenAPI 3.1 document. It is generated from the
// same table that registers the routes, with schemas reflected from the
// Go types the handlers decode and encode: a response field is required
// unless its JSON tag says omitempty (encoding/json always writes it), and
// a request field is required when its struct tag says openapi:"required"
// (the handler refuses a body without it). Tests validate the document with
// an OpenAPI 3.1 validator and every test response against it.
func (s *Server) OpenAPI() map[string]any {
	schemas := map[string]any{}
	problem := schemaOf(reflect.TypeOf(Problem{}), schemas, false)
	paths := map[string]any{}
	tags := map[string]bool{}
	for _, rt := range s.routes() {
		tag := tagOf(rt.path)
		tags[tag] = true
		op := map[string]any{"summary": rt.summary, "description": rt.summary + ". " + accessNote[rt.access], "tags": []any{tag},
			"operationId": strings.ToLower(rt.method) + strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(rt.path, "/", "_"), "{", ""), "}", "")}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string", "format": "uuid"}})
		}
		if rt.response != nil && strings.HasPrefix(reflect.TypeOf(rt.response).Name(), "list[") {
			params = append(params,
				map[string]any{"name": "limit", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": 500}},
				map[string]any{"name": "cursor", "in": "query", "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.request != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(rt.request), schemas, true)}}}
		}
		ok := map[string]any{"description": http.StatusText(rt.status)}
		if rt.response != nil {
			media := "application/json"
			if m, has := rt.response.(interface{ mediaType() string }); has {
				media = m.mediaType()
			}
			ok["content"] = map[string]any{media: map[string]any{"schema": schemaOf(reflect.TypeOf(rt.response), schemas, false)}}
		}
		responses := map[string]any{strconv.Itoa(rt.status): ok,
			"default": map[string]any{"description": "An RFC 9457 problem", "content": map[string]any{"application/problem+json": map[string]any{"schema": problem}}}}
		op["responses"] = responses
		switch rt.access {
		case scoped:
			op["security"] = []any{map[string]any{"bearer": []any{}}}
		case operator:
			op["security"] = []any{map[string]any{"operator": []any{}}}
		}
		item, _ := paths[rt.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[rt.path] = item
		}
		item[strings.ToLower(rt.method)] = op
	}
	var tagList []any
	for _, t := range []string{"service", "auth", "api-keys", "entities", "agents", "delegations", "worlds", "rooms", "message-servers", "knowledge", "admin"} {
		if tags[t] {
			tagList = append(tagList, map[string]any{"name": t, "description": tagDescriptions[t]})
			delete(tags, t)
		}
	}
	if len(tags) > 0 {
		panic(fmt.Sprintf("httpapi: routes with undescribed OpenAPI tags %v", tags)) // a route added without its tag
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "bulkhead", "version": "v1",
			"description": "Tenant isolation enforced by PostgreSQL: every /v1 request runs in the authenticated caller's tenant and entity scope; a row hidden by row-level security is a 404."},
		"tags":  tagList,
		"paths": paths,
		"components": map[string]any{"schemas": schemas, "securitySchemes": map[string]any{
			"bearer":   map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "a JWT of a trusted issuer, one of bulkhead's own access tokens, or an API key"},
			"operator": map[string]any{"type": "http", "scheme": "bearer", "description": "the operator token (DATA_DIR/operator-token), never a tenant credential"}}},
	}
}

var accessNote = map[access]string{
	public:   "Public: no credential.",
	scoped:   "Runs in the authenticated caller's tenant and entity scope; a row hidden by row-level security answers 404.",
	operator: "Control plane: only the operator token, never a tenant credential.",
}

var tagDescriptions = map[string]string{
	"service":         "Health, readiness and documents about the API",
	"auth":            "bulkhead's own accounts: register, log in, refresh, log out",
	"api-keys":        "The caller's API keys",
	"entities":        "The tenant's directory of principals",
	"agents":          "Agents (characters); secrets are write-only",
	"delegations":     "Agents acting for principals",
	"worlds":          "Shared environments",
	"rooms":           "Conversations, their participants and messages",
	"message-servers": "External platforms and their agents",
	"knowledge":       "Documents, retrieval and answers",
	"admin":           "Operator endpoints",
}

// tagOf groups a path under its resource.
func tagOf(path string) string {
	switch {
	case strings.HasPrefix(path, "/admin/"):
		return "admin"
	case strings.HasPrefix(path, "/v1/tenants/"):
		return "auth"
	case !strings.HasPrefix(path, "/v1/"):
		return "service"
	}
	switch seg, _, _ := strings.Cut(strings.TrimPrefix(path, "/v1/"), "/"); seg {
	case "me":
		return "entities"
	case "stream-tickets":
		return "rooms"
	case "documents", "query", "answer":
		return "knowledge"
	default:
		return seg
	}
}

// jwkSet is the body of /.well-known/jwks.json (RFC 7517), served as
// application/jwk-set+json.
type jwkSet struct {
	Keys []map[string]any `json:"keys"`
}

func (jwkSet) mediaType() string { return "application/jwk-set+json" }

var (
	uuidType = reflect.TypeOf(uuid.UUID{})
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

// schemaOf reflects t into a JSON Schema, registering named structs under
// components/schemas and referring to them.
func schemaOf(t reflect.Type, schemas map[string]any, request bool) map[string]any {
	switch {
	case t == uuidType:
		return map[string]any{"type": "string", "format": "uuid"}
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == rawType:
		return map[string]any{"type": "object"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := schemaOf(t.Elem(), schemas, request)
		return map[string]any{"oneOf": []any{s, map[string]any{"type": "null"}}}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint32:
		return map[string]any{"type": "integer"}
	case reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), schemas, request)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), schemas, request)}
	case reflect.Struct:
		name := schemaName(t)
		if _, done := schemas[name]; !done {
			schemas[name] = map[string]any{} // guards recursion
			props := map[string]any{}
			var required []string
			addFields(t, props, &required, schemas, request)
			schema := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
			if required != nil {
				sort.Strings(required)
				schema["required"] = required
			}
			schemas[name] = schema
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func addFields(t reflect.Type, props map[string]any, required *[]string, schemas map[string]any, request bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			addFields(f.Type, props, required, schemas, request)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = schemaOf(f.Type, schemas, request)
		if request && f.Tag.Get("openapi") == "required" || !request && !strings.Contains(","+opts+",", ",omitempty,") {
			*required = append(*required, name)
		}
	}
}

// schemaName names a struct type, including generic arguments
// (list[bulkhead.Room] -> RoomList).
func schemaName(t reflect.Type) string {
	n := t.Name()
	if i := strings.Index(n, "["); i >= 0 {
		arg := n[i+1 : len(n)-1]
		arg = arg[strings.LastIndex(arg, ".")+1:]
		return upper(arg) + upper(n[:i])
	}
	return upper(n)
}

func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
