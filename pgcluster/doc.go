// Package pgcluster runs a private PostgreSQL cluster from the locally
// installed server binaries: initdb on first use, then postgres as a child
// process listening on a Unix socket in the data dir (and on a loopback TCP
// port when asked).
//
// Guarantees:
//   - The newest installed major version is used; a data dir created by
//     another major version is refused, never upgraded or overwritten.
//   - Run as root, initdb and postgres run as an unprivileged OS user
//     (default "postgres"), which owns the cluster directory.
//   - A cluster this package started in attached mode is stopped on every
//     exit path: Stop, a failed start, and the death of the starting process
//     (a parent-death signal delivered from a locked OS thread, so it does
//     not fire early; golang/go#27505).
//   - A cluster already running on the data dir is reused and left running.
//   - Supervised (Cluster.Supervise), a postmaster that dies without a
//     clean shutdown is started again with capped exponential backoff, and
//     never while another runs on the data dir; stale postmaster.pid and
//     socket lock files of a killed postmaster never keep a start from
//     succeeding.
//   - The bootstrap superuser authenticates with a random password kept in a
//     0600 file; no role logs in without a password, locally or over TCP.
package pgcluster
