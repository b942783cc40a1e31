package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// Password change and reset. A reset token is issued by the control plane
// (delivering it is the operator's business), is random, shown once and
// stored only as a keyed hash (HMAC-SHA256 under the pepper) with its
// expiry, replaces any earlier one of the user, and is spent by its first
// successful use: the database consumes it in the same UPDATE that sets the
// new password, so two concurrent redemptions can't both succeed. Both a
// change and a reset end the user's sessions (its refresh tokens, the
// access tokens minted with them, and its earlier session-less tokens).

// DefaultResetTTL is how long a password reset token is valid unless the
// operator says otherwise; MaxResetTTL bounds it.
const (
	DefaultResetTTL = time.Hour
	MaxResetTTL     = 7 * 24 * time.Hour
)

// validPassword checks a new password's length.
func validPassword(field, password string) error {
	if len(password) < MinPasswordLength || len(password) > 1024 {
		return bulkhead.Invalid(field, fmt.Sprintf("%d to 1024 characters", MinPasswordLength))
	}
	return nil
}

// IssuePasswordReset makes a password reset token for the user entity of
// tenant, valid for ttl (DefaultResetTTL if zero, at most MaxResetTTL), and
// returns it with its expiry: the only time it exists outside the caller.
// ctx must allow the maintenance path (the control plane). It returns
// bulkhead.ErrNotFound for an entity without a login, bulkhead.ErrForbidden
// for a disabled tenant or entity, and bulkhead.ErrInvalid for a bad ttl.
func (a *Accounts) IssuePasswordReset(ctx context.Context, tenant, entity uuid.UUID, ttl time.Duration) (string, time.Time, error) {
	if ttl == 0 {
		ttl = DefaultResetTTL
	}
	if ttl < time.Minute || ttl > MaxResetTTL {
		return "", time.Time{}, bulkhead.Invalid("ttl", fmt.Sprintf("from 1 minute to %s", MaxResetTTL))
	}
	secret, hash := a.newSecretFor("reset", entity)
	exp := time.Now().Add(ttl)
	if err := a.db.SetPasswordReset(ctx, tenant, entity, hash, exp); err != nil {
		return "", time.Time{}, err
	}
	return format("bhp", tenant, entity, secret), exp, nil
}

// RedeemPasswordReset sets the password of the user named by a reset
// token of tenant. Every failure (malformed, unknown, spent, expired or
// replaced token, another tenant's token, a disabled tenant or entity) is
// the same bulkhead.ErrUnauthenticated; a password that is too short or too
// long is bulkhead.ErrInvalid, and leaves the token unspent.
func (a *Accounts) RedeemPasswordReset(ctx context.Context, tenant uuid.UUID, resetToken, newPassword string) error {
	if err := validPassword("new_password", newPassword); err != nil {
		return err
	}
	t, entity, secret, ok := parse("bhp", resetToken)
	if !ok || t != tenant {
		return unauthenticated("malformed reset token")
	}
	newHash, err := a.hasher.Hash(ctx, newPassword)
	if err != nil {
		return err
	}
	err = a.db.RedeemPasswordReset(tenantScope(ctx, tenant), entity, a.hash("reset", entity, secret), newHash)
	if errors.Is(err, bulkhead.ErrNotFound) {
		return unauthenticated("unknown, spent or expired reset token")
	}
	return err
}

// ChangePassword changes the calling entity's password (ctx's scope, not
// acting for anyone) after checking the current one, ends all of its
// sessions and returns tokens of a new one. A wrong current password is
// bulkhead.ErrUnauthenticated; a bad new one bulkhead.ErrInvalid.
func (a *Accounts) ChangePassword(ctx context.Context, current, newPassword string) (Tokens, error) {
	s, ok := bulkhead.ScopeFrom(ctx)
	if !ok || s.Entity == uuid.Nil {
		return Tokens{}, bulkhead.ErrUnauthenticated
	}
	if s.ActingFor != uuid.Nil {
		return Tokens{}, fmt.Errorf("%w: an agent can't change the password of the principal it acts for", bulkhead.ErrForbidden)
	}
	if err := validPassword("new_password", newPassword); err != nil {
		return Tokens{}, err
	}
	if len(current) > 1024 {
		return Tokens{}, unauthenticated("wrong current password")
	}
	params, err := a.db.OwnPasswordParams(ctx)
	if err != nil && !errors.Is(err, bulkhead.ErrNotFound) {
		return Tokens{}, err
	}
	key, err := a.hasher.Derive(ctx, params, current) // runs without a password too
	if err != nil {
		return Tokens{}, err
	}
	newHash, err := a.hasher.Hash(ctx, newPassword)
	if err != nil {
		return Tokens{}, err
	}
	if params == "" {
		return Tokens{}, unauthenticated("no password set")
	}
	err = a.db.ChangeOwnPassword(ctx, key, newHash)
	if errors.Is(err, bulkhead.ErrNotFound) {
		return Tokens{}, unauthenticated("wrong current password")
	}
	if err != nil {
		return Tokens{}, err
	}
	return a.issue(ctx, s.Tenant, s.Entity, uuid.New())
}

// newSecretFor is newSecret for a secret bound to a known id (the reset
// token is looked up by its user's entity id).
func (a *Accounts) newSecretFor(purpose string, id uuid.UUID) (string, []byte) {
	_, secret, _ := a.newSecret(purpose)
	return secret, a.hash(purpose, id, secret)
}
