package httpapi

import (
	"net/http"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// Control-plane handlers of external identity (issue 13): the issuers a
// tenant registered (tokens of an issuer trusted with a tenant claim may
// name only those tenants), pre-linked external entities, deactivation.

type (
	issuerInput struct {
		Issuer string `json:"issuer" openapi:"required"`
		// JIT lets the issuer's first valid token for an unknown subject
		// create its entity in the tenant.
		JIT bool `json:"jit"`
	}
	issuerRef struct {
		Issuer string `json:"issuer" openapi:"required"`
	}
)

func (s *Server) adminListIssuers(w http.ResponseWriter, r *http.Request) error {
	tenant, err := pathID(r, "id")
	if err != nil {
		return err
	}
	is, err := s.db.TenantIssuers(r.Context(), tenant)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(is, ""))
	return nil
}

func (s *Server) adminAddIssuer(w http.ResponseWriter, r *http.Request) error {
	tenant, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in issuerInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	ti, err := s.db.AddTenantIssuer(r.Context(), tenant, in.Issuer, in.JIT)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ti)
	return nil
}

func (s *Server) adminRemoveIssuer(w http.ResponseWriter, r *http.Request) error {
	tenant, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in issuerRef
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if err := s.db.RemoveTenantIssuer(r.Context(), tenant, in.Issuer); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// linkEntity is adminCreateEntity for an external subject: the entity gets
// the id the subject's tokens name, auth.EntityID(issuer, subject).
func (s *Server) linkEntity(w http.ResponseWriter, r *http.Request, in entityInput) error {
	tenant, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if in.Issuer == "" || in.Subject == "" {
		return bulkhead.Invalid("subject", "issuer and subject go together")
	}
	e, err := s.db.LinkEntity(r.Context(), tenant, postgres.ExternalEntity{ID: auth.EntityID(in.Issuer, in.Subject),
		Kind: in.Kind, Name: in.Name, Email: in.Email, Issuer: in.Issuer, Subject: in.Subject})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, e)
	return nil
}

func (s *Server) adminSetEntityActive(active bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		tenant, err := pathID(r, "id")
		if err != nil {
			return err
		}
		entity, err := pathID(r, "entity_id")
		if err != nil {
			return err
		}
		if err := s.db.SetEntityActive(r.Context(), tenant, entity, active); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}
