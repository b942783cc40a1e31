// Package vectortest is the contract every vector.Store backend must pass.
// A backend's tests call Run with a constructor of fresh, empty stores:
//
//	func TestContract(t *testing.T) {
//		vectortest.Run(t, func(t *testing.T) vector.Store {
//			s, err := embedded.New(t.TempDir())
//			...
//			return s
//		})
//	}
//
// Every case goes through a vector.Router, exactly as production code does,
// with two tenants in one region. What it asserts:
//   - search order (score, then id) and cosine scores, k, payloads;
//   - update by id, delete by id (all or nothing), stats;
//   - dimension mismatches on upsert, search and re-create (ErrDimension);
//   - a missing collection is ErrNotFound for every method, Upsert never
//     creates one, and a dropped collection is gone;
//   - two tenants using the same point ids never see each other's points,
//     asserted on both sides, and a Collection from one tenant's scope is
//     refused in the other's;
//   - returned payloads and vectors are copies;
//   - generations of one tenant are separate collections: their own
//     dimension, points, Stats and Scroll, same point ids kept apart,
//     dropping one leaves the other whole; a generation never created is
//     ErrNotFound for every method (never empty, never another
//     generation's); AtGeneration(0) is refused (bulkhead.ErrInvalid) and
//     the zero Collection stays refused at any generation; one tenant's
//     generation 2 is refused in another tenant's scope (ErrForbidden) by
//     the router and by the backend itself.
package vectortest
