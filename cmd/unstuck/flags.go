package main

import (
	"errors"
	"flag"
)

// flagExit maps a flag parse error to an exit code: --help is success, a bad
// flag is a usage error (the flag package already printed why).
func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}
