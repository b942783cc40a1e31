package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// progressBar draws "label [#####.....] done/total" on one terminal line.
type progressBar struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	drawn bool
}

func newProgress(w io.Writer, label string) *progressBar { return &progressBar{w: w, label: label} }

// update redraws the bar.
func (p *progressBar) update(done, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	const width = 30
	filled := width
	if total > 0 {
		filled = int(min(done, total) * width / total)
	}
	fmt.Fprintf(p.w, "\r%s [%s%s] %d/%d", p.label, strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total)
	p.drawn = true
}

// done ends the bar's line.
func (p *progressBar) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
