//go:build !unix

package tftp

import "os"

const openFlags = os.O_RDONLY
