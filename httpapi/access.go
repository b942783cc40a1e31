package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
)

// Taking access away: the revocation gate of authenticated requests, a
// user's own password change, the redemption of a reset token, and the
// control plane's disable, enable, delete, revoke and reset-issue
// endpoints.

// accessGate makes sure no response of an authenticated request leaves
// before the request's credential passed the revocation check: normally a
// transaction of the request has done it (postgres.AccessChecked); a
// handler that answers without one (or fails before one) costs one extra
// round trip here. A refused credential turns the response into a 401,
// whatever the handler meant to send.
type accessGate struct {
	http.ResponseWriter
	r     *http.Request
	s     *Server
	state int // 0: not decided, 1: passed, 2: refused (the 401 is written)
}

func (g *accessGate) pass() bool {
	if g.state != 0 {
		return g.state == 1
	}
	g.state = 1
	ctx := g.r.Context()
	if postgres.AccessChecked(ctx) {
		return true
	}
	err := g.s.db.CheckAccess(ctx)
	if err == nil {
		return true
	}
	g.state = 2
	h := g.ResponseWriter.Header()
	id := h.Get("X-Request-Id")
	clear(h)
	if id != "" {
		h.Set("X-Request-Id", id)
	}
	g.s.log.InfoContext(ctx, "credential refused by the access check", "path", g.r.URL.Path, "err", err)
	if errors.Is(err, bulkhead.ErrUnauthenticated) {
		h.Set("WWW-Authenticate", `Bearer realm="bulkhead"`)
		g.s.metrics.authFails.WithLabelValues("revoked").Inc()
	}
	writeError(g.ResponseWriter, g.r, g.s.log, err)
	return false
}

func (g *accessGate) WriteHeader(code int) {
	if g.pass() {
		g.ResponseWriter.WriteHeader(code)
	}
}

func (g *accessGate) Write(b []byte) (int, error) {
	if !g.pass() {
		return len(b), nil // swallowed: the 401 was sent instead
	}
	return g.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController and the WebSocket library reach the
// connection (the stream has passed the check before it upgrades).
func (g *accessGate) Unwrap() http.ResponseWriter { return g.ResponseWriter }

type (
	passwordChangeInput struct {
		CurrentPassword string `json:"current_password" openapi:"required"`
		NewPassword     string `json:"new_password" openapi:"required"`
	}
	passwordResetInput struct {
		Token       string `json:"token" openapi:"required"`
		NewPassword string `json:"new_password" openapi:"required"`
	}
	resetIssueInput struct {
		TTLSeconds int64 `json:"ttl_seconds"`
	}
	resetIssued struct {
		Token     string    `json:"token"` // shown once
		EntityID  uuid.UUID `json:"entity_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	revokedCount struct {
		Revoked int64 `json:"revoked"`
	}
)

// changePassword is POST /v1/me/password: the current password is
// required; every session of the caller ends and the answer carries tokens
// of a new one.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request) error {
	a, err := s.accounts()
	if err != nil {
		return err
	}
	var in passwordChangeInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	sc, _ := bulkhead.ScopeFrom(r.Context())
	if err := s.limitAccount(w, r, sc.Tenant.String()+"/entity/"+sc.Entity.String()); err != nil {
		return err
	}
	t, err := a.ChangePassword(r.Context(), in.CurrentPassword, in.NewPassword)
	if err != nil {
		if errors.Is(err, bulkhead.ErrUnauthenticated) {
			s.metrics.authFails.WithLabelValues("password_change").Inc()
		}
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, t)
	return nil
}

// redeemPasswordReset is POST /v1/tenants/{tenant_id}/auth/password-reset.
func (s *Server) redeemPasswordReset(w http.ResponseWriter, r *http.Request) error {
	a, err := s.accounts()
	if err != nil {
		return err
	}
	tenant, err := pathID(r, "tenant_id")
	if err != nil {
		return err
	}
	var in passwordResetInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if err := s.limitFlow(w, r, ""); err != nil {
		return err
	}
	if err := a.RedeemPasswordReset(r.Context(), tenant, in.Token, in.NewPassword); err != nil {
		if errors.Is(err, bulkhead.ErrUnauthenticated) {
			s.metrics.authFails.WithLabelValues("password_reset").Inc()
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// limitAccount applies the per-IP and per-account auth limits to a flow
// whose account is known from the credential.
func (s *Server) limitAccount(w http.ResponseWriter, r *http.Request, account string) error {
	if ok, d := s.authIP.allow(clientIP(r, s.limits.TrustedProxies)); !ok {
		return s.rateLimited(w, "auth_ip", d)
	}
	if ok, d := s.authAccount.allow(account); !ok {
		return s.rateLimited(w, "auth_account", d)
	}
	return nil
}

// tenantEntity reads {id} (the tenant) and {entity_id} from the path.
func tenantEntity(r *http.Request) (uuid.UUID, uuid.UUID, error) {
	tenant, err := pathID(r, "id")
	if err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	entity, err := pathID(r, "entity_id")
	return tenant, entity, err
}

func (s *Server) adminSetTenantDisabled(disabled bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		return deleteByID(w, r, func(ctx context.Context, id uuid.UUID) error { return s.db.SetTenantDisabled(ctx, id, disabled) })
	}
}

func (s *Server) adminSetEntityDisabled(disabled bool) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		tenant, entity, err := tenantEntity(r)
		if err != nil {
			return err
		}
		if err := s.db.SetEntityDisabled(r.Context(), tenant, entity, disabled); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *Server) adminDeleteEntity(w http.ResponseWriter, r *http.Request) error {
	tenant, entity, err := tenantEntity(r)
	if err != nil {
		return err
	}
	if err := s.db.DeleteEntity(r.Context(), tenant, entity); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) adminRevokeSessions(w http.ResponseWriter, r *http.Request) error {
	tenant, entity, err := tenantEntity(r)
	if err != nil {
		return err
	}
	n, err := s.db.RevokeEntitySessions(r.Context(), tenant, entity)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, revokedCount{Revoked: n})
	return nil
}

func (s *Server) adminRevokeEntityAPIKeys(w http.ResponseWriter, r *http.Request) error {
	tenant, entity, err := tenantEntity(r)
	if err != nil {
		return err
	}
	n, err := s.db.RevokeEntityAPIKeys(r.Context(), tenant, entity)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, revokedCount{Revoked: n})
	return nil
}

func (s *Server) adminEntityAPIKeys(w http.ResponseWriter, r *http.Request) error {
	tenant, entity, err := tenantEntity(r)
	if err != nil {
		return err
	}
	ks, err := s.db.EntityAPIKeys(r.Context(), tenant, entity)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(ks, ""))
	return nil
}

func (s *Server) adminRevokeAPIKey(w http.ResponseWriter, r *http.Request) error {
	tenant, err := pathID(r, "id")
	if err != nil {
		return err
	}
	key, err := pathID(r, "key_id")
	if err != nil {
		return err
	}
	if err := s.db.RevokeTenantAPIKey(r.Context(), tenant, key); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) adminIssuePasswordReset(w http.ResponseWriter, r *http.Request) error {
	a, err := s.accounts()
	if err != nil {
		return err
	}
	tenant, entity, err := tenantEntity(r)
	if err != nil {
		return err
	}
	var in resetIssueInput
	if r.ContentLength != 0 {
		if err := decode(w, r, s.maxBody, &in); err != nil {
			return err
		}
	}
	if in.TTLSeconds < 0 || in.TTLSeconds > int64(auth.MaxResetTTL/time.Second) {
		return bulkhead.Invalid("ttl_seconds", "zero (the default, an hour) or from 60 to 604800")
	}
	tok, exp, err := a.IssuePasswordReset(r.Context(), tenant, entity, time.Duration(in.TTLSeconds)*time.Second)
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, resetIssued{Token: tok, EntityID: entity, ExpiresAt: exp})
	return nil
}
