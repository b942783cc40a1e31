package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
)

// Account flows under a tenant named in the path (so no cross-tenant
// look-up is ever needed) and API keys. Every failure of a flow is the same
// 401; registration answers 202 whether or not the email was new.

type (
	registerInput struct {
		Email    string `json:"email" openapi:"required"`
		Name     string `json:"name" openapi:"required"`
		Password string `json:"password" openapi:"required"`
	}
	loginInput struct {
		Email    string `json:"email" openapi:"required"`
		Password string `json:"password" openapi:"required"`
	}
	refreshInput struct {
		RefreshToken string `json:"refresh_token" openapi:"required"`
	}
	apiKeyInput struct {
		Name       string   `json:"name"`
		Scopes     []string `json:"scopes"`
		TTLSeconds int64    `json:"ttl_seconds"`
	}
	apiKeyCreated struct {
		Key string `json:"key"` // shown once
		postgres.APIKey
	}
)

// limitFlow applies the auth-endpoint limits: per client IP for every call,
// and per account (tenant and email) when the body names one.
func (s *Server) limitFlow(w http.ResponseWriter, r *http.Request, account string) error {
	if ok, d := s.authIP.allow(clientIP(r, s.limits.TrustedProxies)); !ok {
		return s.rateLimited(w, "auth_ip", d)
	}
	if account != "" {
		if ok, d := s.authAccount.allow(r.PathValue("tenant_id") + "/" + strings.ToLower(account)); !ok {
			return s.rateLimited(w, "auth_account", d)
		}
	}
	return nil
}

func (s *Server) accounts() (*auth.Accounts, error) {
	if s.accts == nil {
		return nil, errNoRoute
	}
	return s.accts, nil
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) error {
	a, err := s.accounts()
	if err != nil {
		return err
	}
	tenant, err := pathID(r, "tenant_id")
	if err != nil {
		return err
	}
	var in registerInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if err := s.limitFlow(w, r, in.Email); err != nil {
		return err
	}
	if err := a.Register(r.Context(), tenant, in.Email, in.Name, in.Password); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted: if the email was new, the account exists; log in to check"})
	return nil
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	a, err := s.accounts()
	if err != nil {
		return err
	}
	tenant, err := pathID(r, "tenant_id")
	if err != nil {
		return err
	}
	var in loginInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if err := s.limitFlow(w, r, in.Email); err != nil {
		return err
	}
	t, err := a.Login(r.Context(), tenant, in.Email, in.Password)
	if err != nil {
		s.metrics.authFails.WithLabelValues("login").Inc()
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	return s.withRefreshToken(w, r, func(a *auth.Accounts, tenant uuid.UUID, token string) error {
		t, err := a.Refresh(r.Context(), tenant, token)
		if err != nil {
			s.metrics.authFails.WithLabelValues("refresh").Inc()
			return err
		}
		writeJSON(w, http.StatusOK, t)
		return nil
	})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	return s.withRefreshToken(w, r, func(a *auth.Accounts, tenant uuid.UUID, token string) error {
		if err := a.Logout(r.Context(), tenant, token); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// withRefreshToken reads the tenant from the path and the refresh token
// from the body, applies the per-IP limit, and runs f.
func (s *Server) withRefreshToken(w http.ResponseWriter, r *http.Request, f func(a *auth.Accounts, tenant uuid.UUID, token string) error) error {
	a, err := s.accounts()
	if err != nil {
		return err
	}
	tenant, err := pathID(r, "tenant_id")
	if err != nil {
		return err
	}
	var in refreshInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if err := s.limitFlow(w, r, ""); err != nil {
		return err
	}
	return f(a, tenant, in.RefreshToken)
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request) error {
	a, err := s.accounts()
	if err != nil {
		return err
	}
	var in apiKeyInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if in.TTLSeconds < 0 {
		return bulkhead.Invalid("ttl_seconds", "zero (no expiry) or positive")
	}
	key, k, err := a.CreateAPIKey(r.Context(), in.Name, in.Scopes, time.Duration(in.TTLSeconds)*time.Second)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, apiKeyCreated{Key: key, APIKey: k})
	return nil
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request) error {
	ks, err := s.db.ListAPIKeys(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(ks, ""))
	return nil
}

func (s *Server) revokeAPIKey(w http.ResponseWriter, r *http.Request) error {
	return deleteByID(w, r, s.db.RevokeAPIKey)
}
