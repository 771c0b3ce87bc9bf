// Command nnp prints its effective user ID. Installed setuid root in the
// nonewprivs test image, it shows whether the setuid bit took effect: with
// no_new_privs set the kernel ignores the bit and the caller's uid remains.
package main

import (
	"fmt"
	"os"
)

func main() {
	// The conformance spec compares the log line exactly.
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
