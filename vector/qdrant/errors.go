package qdrant

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bulkhead-dev/bulkhead/vector"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// classify returns the vector sentinel error for an error from the Qdrant
// client (nil for nil):
//
//	NotFound                         → vector.ErrNotFound
//	PermissionDenied, Unauthenticated → vector.ErrForbidden
//	InvalidArgument about dimensions  → vector.ErrDimension
//	InvalidArgument "not found"/"doesn't exist" → vector.ErrNotFound
//	anything else (Unavailable, DeadlineExceeded, Canceled, other
//	InvalidArgument, Internal, ResourceExhausted, connection and
//	context errors, non-gRPC errors) → vector.ErrUnavailable
//
// Input is validated before it is sent, so a server-side InvalidArgument
// that is not about dimensions means the backend and this package disagree:
// it fails closed as ErrUnavailable rather than blaming the caller.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return vector.ErrUnavailable
	}
	st, ok := status.FromError(err)
	if !ok {
		return vector.ErrUnavailable
	}
	msg := strings.ToLower(st.Message())
	switch st.Code() {
	case codes.NotFound:
		return vector.ErrNotFound
	case codes.PermissionDenied, codes.Unauthenticated:
		return vector.ErrForbidden
	case codes.InvalidArgument:
		switch {
		case strings.Contains(msg, "dimension"):
			return vector.ErrDimension
		case strings.Contains(msg, "not found") || strings.Contains(msg, "doesn't exist") || strings.Contains(msg, "does not exist"):
			return vector.ErrNotFound
		}
	}
	return vector.ErrUnavailable
}

// wrap returns err classified, keeping the original for the logs.
func wrap(op, collection string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("qdrant %s %s: %w (%w)", op, collection, classify(err), err)
}
