// Command nnp is the conformance images' stand-in for nonewprivs' nnp:
// installed setuid root, it prints its effective UID, which shows whether
// no_new_privs stopped the setuid bit from taking effect.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("Effective uid: %d\n", os.Geteuid())
}
