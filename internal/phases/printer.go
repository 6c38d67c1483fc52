package phases

import (
	"fmt"
	"io"
)

// printer is the one step printer of every flow: "[u7s] ..." for a step, an indented line for
// a detail of it. Each flow's data embeds it.
type printer struct {
	Out io.Writer
}

func (p printer) step(format string, args ...any) {
	fmt.Fprintf(p.Out, "[u7s] "+format+"\n", args...)
}

func (p printer) detail(format string, args ...any) {
	fmt.Fprintf(p.Out, "    "+format+"\n", args...)
}

func (p printer) out() io.Writer { return p.Out }
