// Package bench measures what isolation costs, on real PostgreSQL, against
// a baseline measured in the same run: the same queries through the same
// Go code on an identical copy of the data whose policies are removed (the
// query's own WHERE tenant_id is the only filter there). Results are ratios,
// never timed assertions.
//
// It starts its own throwaway cluster, so it never touches a user's data.
package bench
