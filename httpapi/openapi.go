package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
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
// Go types the handlers decode and encode.
func (s *Server) OpenAPI() map[string]any {
	schemas := map[string]any{}
	problem := map[string]any{"$ref": "#/components/schemas/Problem"}
	schemas["Problem"] = schemaOf(reflect.TypeOf(Problem{}), schemas)
	paths := map[string]any{}
	for _, rt := range s.routes() {
		op := map[string]any{"summary": rt.summary, "operationId": strings.ToLower(rt.method) + strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(rt.path, "/", "_"), "{", ""), "}", "")}
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
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(rt.request), schemas)}}}
		}
		ok := map[string]any{"description": http.StatusText(rt.status)}
		if rt.response != nil {
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": schemaOf(reflect.TypeOf(rt.response), schemas)}}
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
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "bulkhead", "version": "v1",
			"description": "Tenant isolation enforced by PostgreSQL: every /v1 request runs in the authenticated caller's tenant and entity scope; a row hidden by row-level security is a 404."},
		"paths": paths,
		"components": map[string]any{"schemas": schemas, "securitySchemes": map[string]any{
			"bearer":   map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
			"operator": map[string]any{"type": "http", "scheme": "bearer", "description": "the operator token (DATA_DIR/operator-token), never a tenant credential"}}},
	}
}

var (
	uuidType = reflect.TypeOf(uuid.UUID{})
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage{})
)

// schemaOf reflects t into a JSON Schema, registering named structs under
// components/schemas and referring to them.
func schemaOf(t reflect.Type, schemas map[string]any) map[string]any {
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
		s := schemaOf(t.Elem(), schemas)
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
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), schemas)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), schemas)}
	case reflect.Struct:
		name := schemaName(t)
		if _, done := schemas[name]; !done {
			schemas[name] = map[string]any{} // guards recursion
			props := map[string]any{}
			addFields(t, props, schemas)
			schemas[name] = map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func addFields(t reflect.Type, props map[string]any, schemas map[string]any) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			addFields(f.Type, props, schemas)
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = schemaOf(f.Type, schemas)
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
