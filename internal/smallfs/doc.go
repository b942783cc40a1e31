// Package smallfs gives a test a small file system of its own, a tmpfs
// mounted for the test, and fills it, so that what bulkhead does on a full
// disk is tested on a real one: the kernel's ENOSPC, not a mock.
//
// Mounting needs root with CAP_SYS_ADMIN on Linux (CI runs the tests as
// root). Without it the test fails, saying so; it never skips. Every mount
// is unmounted when the test ends, whether it passed or not.
package smallfs
