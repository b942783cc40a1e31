package bench

import (
	"fmt"
	"io"

	"golang.org/x/sys/unix"
)

// pinPostgres pins the cluster's postmaster (so every backend started
// after it) to cpu and says so on progress; a negative cpu leaves the
// scheduler free.
func pinPostgres(pid, cpu int, progress io.Writer) error {
	if cpu < 0 {
		return nil
	}
	if err := pinProcess(pid, cpu); err != nil {
		return err
	}
	fmt.Fprintf(progress, "PostgreSQL's backends pinned to CPU %d\n", cpu)
	return nil
}

// pinProcess confines process pid to CPU cpu. Children it forks later
// inherit the mask: pinning the postmaster pins every backend started
// after it, wherever the earlier ones run.
func pinProcess(pid, cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(pid, &set); err != nil {
		return fmt.Errorf("pin process %d to CPU %d: %w", pid, cpu, err)
	}
	return nil
}
