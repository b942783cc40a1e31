package bench

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuTimes is CPU time spent: by the whole machine (every process,
// PostgreSQL's included) and by this process. The zero value is none.
type cpuTimes struct {
	machine, self time.Duration
	unread        bool // a reading failed: the times mean nothing
}

// userHZ is the unit of /proc/stat (USER_HZ, 100 on Linux).
const userHZ = 100

// readCPU reads the busy time of the machine (/proc/stat: user, nice,
// system, irq, softirq and steal, not idle or iowait) and this process's
// user and system time (getrusage).
func readCPU() cpuTimes {
	c := cpuTimes{unread: true}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return c
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return c
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return c
		}
		busy += n
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return c
	}
	c.machine = time.Duration(busy) * time.Second / userHZ
	c.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	c.unread = false
	return c
}

// sub is c − o.
func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{machine: c.machine - o.machine, self: c.self - o.self, unread: c.unread || o.unread}
}

// add is c + o.
func (c cpuTimes) add(o cpuTimes) cpuTimes {
	return cpuTimes{machine: c.machine + o.machine, self: c.self + o.self, unread: c.unread || o.unread}
}

// per divides c among n units of work (documents, requests): the
// machine's and this process's share of each, and false when c was not
// read or there was no work.
func (c cpuTimes) per(n int) (machine, self time.Duration, ok bool) {
	if c.unread || n == 0 {
		return 0, 0, false
	}
	return c.machine / time.Duration(n), c.self / time.Duration(n), true
}
