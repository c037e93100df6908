package app

import "fmt"

// plural is n followed by unit, with an s unless n is 1: "1 byte",
// "0 bytes", "70000 bytes".
func plural(n int, unit string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, unit)
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
