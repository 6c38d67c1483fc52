package phases

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// confirm asks, after what says what is about to happen, for "yes" on in; yes (--yes) skips
// the question. The one prompt of the flows that ask.
func confirm(in io.Reader, out io.Writer, yes bool, what string) error {
	if yes {
		return nil
	}
	fmt.Fprintf(out, "%s Type yes to go on: ", what)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	if strings.TrimSpace(answer) != "yes" {
		return errors.New("not confirmed; nothing was changed")
	}
	return nil
}
