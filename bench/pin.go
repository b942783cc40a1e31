package bench

import (
	"fmt"

	"golang.org/x/sys/unix"
)

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
