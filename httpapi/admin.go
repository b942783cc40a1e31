package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/google/uuid"
)

// Control-plane handlers: reached only with the operator token, they run on
// the maintenance path (cross-tenant by design), with the route as reason.

type (
	tenantInput struct {
		Name   string `json:"name" openapi:"required"`
		Region string `json:"region"`
	}
	entityInput struct {
		Kind  bulkhead.EntityKind `json:"kind"`
		Name  string              `json:"name" openapi:"required"`
		Email string              `json:"email"`
		// Issuer and Subject pre-link an external subject: the entity gets
		// the id its tokens name (issuers.go).
		Issuer  string `json:"issuer"`
		Subject string `json:"subject"`
	}
)

func (s *Server) adminListTenants(w http.ResponseWriter, r *http.Request) error {
	ts, err := s.db.ListTenants(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(ts, ""))
	return nil
}

func (s *Server) adminCreateTenant(w http.ResponseWriter, r *http.Request) error {
	var in tenantInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	create := s.db.CreateTenant
	if s.know != nil { // with a knowledge layer, the tenant's collection too
		create = s.know.CreateTenant
	}
	t, err := create(r.Context(), in.Name, in.Region)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, t)
	return nil
}

func (s *Server) adminDeleteTenant(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	// ?force=true deletes the tenant even if its vector collections can't
	// be dropped, recording what was left (retrieval.Service.DeleteTenant).
	force := r.URL.Query().Get("force") == "true"
	var deleted bool
	if s.know != nil {
		res, err := s.know.DeleteTenant(r.Context(), id, force)
		if err != nil {
			return err
		}
		deleted = res.Deleted
	} else if deleted, err = s.db.DeleteTenant(r.Context(), id); err != nil {
		return err
	}
	if !deleted {
		return fmt.Errorf("tenant %s: %w", id, bulkhead.ErrNotFound) // nothing was there: say so
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) adminCreateEntity(w http.ResponseWriter, r *http.Request) error {
	tenant, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in entityInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if in.Kind == "" {
		in.Kind = bulkhead.KindUser
	}
	if in.Issuer != "" || in.Subject != "" {
		return s.linkEntity(w, r, in)
	}
	e, err := s.db.CreateEntity(r.Context(), tenant, in.Kind, in.Name, in.Email)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, e)
	return nil
}

type reembedInput struct {
	Model string `json:"model" openapi:"required"`
}

func (s *Server) adminProvision(w http.ResponseWriter, r *http.Request) error {
	k, err := s.knowledgeLayer()
	if err != nil {
		return err
	}
	return deleteByID(w, r, k.Provision)
}

func (s *Server) adminReconcile(w http.ResponseWriter, r *http.Request) error {
	k, err := s.knowledgeLayer()
	if err != nil {
		return err
	}
	// Reconciling a large tenant outlasts the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	return getByID(w, r, "id", k.Reconcile)
}

func (s *Server) adminReembed(w http.ResponseWriter, r *http.Request) error {
	k, err := s.knowledgeLayer()
	if err != nil {
		return err
	}
	var in reembedInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	return getByID(w, r, "id", func(ctx context.Context, id uuid.UUID) (retrieval.ReconcileStats, error) {
		return k.Reembed(ctx, id, in.Model)
	})
}
