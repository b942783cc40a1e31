package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/helpers"
)

var (
	specOnce sync.Once
	spec     validator.Validator
	specErr  error
	specMu   sync.Mutex // the validator's caches are not documented as concurrency-safe
)

// openAPIValidator returns a validator of the server's OpenAPI document
// (pb33f/libopenapi-validator: OpenAPI 3.1 with JSON Schema 2020-12).
func openAPIValidator(t testing.TB) validator.Validator {
	t.Helper()
	specOnce.Do(func() {
		raw, err := json.Marshal(new(httpapi.Server).OpenAPI())
		if err != nil {
			specErr = err
			return
		}
		doc, err := libopenapi.NewDocument(raw)
		if err != nil {
			specErr = err
			return
		}
		v, errs := validator.NewValidator(doc)
		if len(errs) > 0 {
			specErr = fmt.Errorf("build the validator: %v", errs)
			return
		}
		spec = v
	})
	if specErr != nil {
		t.Fatal(specErr)
	}
	return spec
}

// TestOpenAPIDocumentIsValid validates the served document against the
// OpenAPI 3.1 schema with a real validator (the golden file in TestOpenAPI
// is only a diff aid), and checks what the schema can't: no schema is a
// reference to itself, every operation has a description and a tag, the
// JWK set's media type.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	v := openAPIValidator(t)
	if ok, errs := v.ValidateDocument(); !ok {
		for _, e := range errs {
			t.Errorf("invalid OpenAPI document: %s: %s", e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s at %s", se.Reason, se.FieldPath+" "+se.KeywordLocation)
			}
		}
	}
	doc := new(httpapi.Server).OpenAPI()
	raw, _ := json.Marshal(doc)
	var m map[string]any
	json.Unmarshal(raw, &m)
	schemas := m["components"].(map[string]any)["schemas"].(map[string]any)
	for name, s := range schemas {
		if ref, _ := s.(map[string]any)["$ref"].(string); ref == "#/components/schemas/"+name {
			t.Errorf("components.schemas.%s refers to itself", name)
		}
	}
	if req, _ := schemas["Problem"].(map[string]any)["required"].([]any); len(req) != 3 {
		t.Errorf("Problem requires %v, want type, title, status", req)
	}
	if req, _ := schemas["MessageInput"].(map[string]any)["required"].([]any); fmt.Sprint(req) != "[content]" {
		t.Errorf("MessageInput requires %v, want [content]", req)
	}
	for path, item := range m["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			o := op.(map[string]any)
			if d, _ := o["description"].(string); d == "" {
				t.Errorf("%s %s has no description", method, path)
			}
			if tags, _ := o["tags"].([]any); len(tags) == 0 {
				t.Errorf("%s %s has no tag", method, path)
			}
		}
	}
	jwks := m["paths"].(map[string]any)["/.well-known/jwks.json"].(map[string]any)["get"].(map[string]any)["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)
	if _, ok := jwks["application/jwk-set+json"]; !ok || len(jwks) != 1 {
		t.Errorf("/.well-known/jwks.json is documented as %v, want application/jwk-set+json", jwks)
	}
}

// validating is an http.RoundTripper that checks every response of a
// documented route against the OpenAPI document (status, media type, body
// schema), reporting mismatches as test errors. Requests are not
// validated: the tests send bad ones on purpose.
type validating struct {
	report func(format string, args ...any) // t.Errorf
	v      validator.Validator
}

func (vt validating) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	specMu.Lock()
	ok, errs := vt.v.ValidateHttpResponse(req, resp)
	specMu.Unlock()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if !ok {
		for _, e := range errs {
			if e.ValidationType == helpers.PathValidation {
				return resp, nil // an undocumented path or method (404/405 tests, /metrics)
			}
		}
		var msgs []string
		for _, e := range errs {
			msg := e.Message + ": " + e.Reason
			for _, se := range e.SchemaValidationErrors {
				msg += "; " + se.Reason + " at " + se.FieldPath + " " + se.KeywordLocation
			}
			msgs = append(msgs, msg)
		}
		vt.report("%s %s: response %d does not match the OpenAPI document: %s\nbody: %.300s", req.Method, req.URL.Path, resp.StatusCode, strings.Join(msgs, " | "), body)
	}
	return resp, nil
}

// client returns an HTTP client whose responses are validated against the
// OpenAPI document.
func (a *api) client() *http.Client {
	return &http.Client{Transport: validating{report: a.t.Errorf, v: openAPIValidator(a.t)}}
}

// TestResponseValidatorCatchesMismatches shows the validating client can
// fail: a fake server answers documented routes with bodies, statuses and
// media types the document doesn't allow.
func TestResponseValidatorCatchesMismatches(t *testing.T) {
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz": // documented: 200 application/json object
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"status":"ok"}`))
		case "/.well-known/jwks.json": // documented as application/jwk-set+json
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"keys":[]}`))
		case "/v1/worlds/" + nilID: // a World without its required fields, and an extra one
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"name":"w","secret":"x"}`))
		default: // a problem missing its required status
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(404)
			w.Write([]byte(`{"type":"about:blank"}`))
		}
	}))
	defer fake.Close()
	var reports []string
	c := &http.Client{Transport: validating{report: func(f string, args ...any) { reports = append(reports, fmt.Sprintf(f, args...)) }, v: openAPIValidator(t)}}
	for path, wantReport := range map[string]bool{"/healthz": false, "/.well-known/jwks.json": true, "/v1/worlds/" + nilID: true, "/v1/rooms/" + nilID: true} {
		reports = nil
		resp, err := c.Get(fake.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := len(reports) > 0; got != wantReport {
			t.Errorf("GET %s: reported %v, want a report: %v", path, reports, wantReport)
		}
	}
}

const nilID = "00000000-0000-0000-0000-000000000000"
