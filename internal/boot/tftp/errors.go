package tftp

import "fmt"

// ErrorCode is a TFTP error code (RFC 1350 section 5, RFC 2347).
type ErrorCode uint16

// TFTP error codes.
const (
	CodeNotDefined       ErrorCode = 0
	CodeFileNotFound     ErrorCode = 1
	CodeAccessViolation  ErrorCode = 2
	CodeDiskFull         ErrorCode = 3
	CodeIllegalOperation ErrorCode = 4
	CodeUnknownTID       ErrorCode = 5
	CodeFileExists       ErrorCode = 6
	CodeNoSuchUser       ErrorCode = 7
	CodeOptionRefused    ErrorCode = 8
)

func (c ErrorCode) String() string {
	switch c {
	case CodeNotDefined:
		return "not defined"
	case CodeFileNotFound:
		return "file not found"
	case CodeAccessViolation:
		return "access violation"
	case CodeDiskFull:
		return "disk full"
	case CodeIllegalOperation:
		return "illegal operation"
	case CodeUnknownTID:
		return "unknown transfer ID"
	case CodeFileExists:
		return "file already exists"
	case CodeNoSuchUser:
		return "no such user"
	case CodeOptionRefused:
		return "option refused"
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Error is a refusal sent to a TFTP client. Msg is the text put on the wire.
//
// errors.Is(err, ErrAccessViolation) (and the other sentinels) matches any
// *Error with the same Code, whatever its message.
type Error struct {
	Code ErrorCode
	Msg  string
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return "tftp: " + e.Code.String()
	}
	return "tftp: " + e.Code.String() + ": " + e.Msg
}

// Is reports whether target is an *Error with the same code and either an
// empty message (the sentinels) or the same message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Msg == "" || t.Msg == e.Msg)
}

// Sentinels for errors.Is on Event.Err.
var (
	ErrFileNotFound     = &Error{Code: CodeFileNotFound}
	ErrAccessViolation  = &Error{Code: CodeAccessViolation}
	ErrIllegalOperation = &Error{Code: CodeIllegalOperation}
)

func accessViolation(msg string) *Error { return &Error{Code: CodeAccessViolation, Msg: msg} }
