package lab

import (
	"compress/gzip"
	"fmt"
	"io"
	"sort"
	"strings"
)

// cpioEntry is one file of an initramfs.
type cpioEntry struct {
	Name string // without leading slash
	Mode uint32 // type bits included (0o100000 file, 0o040000 dir, 0o120000 symlink, 0o020000 char dev)
	Data []byte // file contents or symlink target
	// RdevMajor/RdevMinor for device nodes.
	RdevMajor, RdevMinor uint32
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
)

// writeCPIO writes entries as a gzip-compressed newc ("070701") archive, the
// format the kernel unpacks as an initramfs. Entries are sorted by name so
// directories precede their contents and the output is reproducible (all
// times are 0).
func writeCPIO(w io.Writer, entries []cpioEntry) error {
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	sorted := append([]cpioEntry(nil), entries...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	ino := uint32(1)
	for _, e := range sorted {
		if err := writeCPIOEntry(zw, e, ino); err != nil {
			return err
		}
		ino++
	}
	if err := writeCPIOEntry(zw, cpioEntry{Name: "TRAILER!!!"}, 0); err != nil {
		return err
	}
	return zw.Close()
}

func writeCPIOEntry(w io.Writer, e cpioEntry, ino uint32) error {
	name := strings.TrimPrefix(e.Name, "/")
	nlink := uint32(1)
	if e.Mode&0o170000 == modeDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.RdevMajor, e.RdevMinor, len(name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(name)+8+len(e.Data)+4)
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, e.Data...)
	buf = pad4(buf)
	_, err := w.Write(buf)
	return err
}

// pad4 pads to a multiple of 4 bytes; every header starts aligned, so
// padding the running buffer pads the archive.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
