package lab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmpClient is a minimal QEMU Machine Protocol client: one command at a
// time, events passed to a callback.
type qmpClient struct {
	conn    net.Conn
	onEvent func(name string, data json.RawMessage)

	cmdMu sync.Mutex // one command in flight
	resp  chan qmpMessage
	done  chan struct{}
}

type qmpMessage struct {
	Event  string          `json:"event,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error,omitempty"`
	QMP json.RawMessage `json:"QMP,omitempty"`
}

// dialQMP connects to a QMP unix socket (retrying until deadline while
// QEMU creates it), reads the greeting and enters command mode.
func dialQMP(path string, deadline time.Time, onEvent func(string, json.RawMessage)) (*qmpClient, error) {
	for {
		q, r, err := attachQMP(path, deadline, onEvent)
		if err == nil {
			go q.read(r)
			if err := q.execute("qmp_capabilities", time.Until(deadline)); err != nil {
				_ = q.conn.Close()
				return nil, err
			}
			return q, nil
		}
		// Right after a restart the socket can still belong to the QEMU
		// that just exited, or answer before the new one greets: try again
		// until the deadline rather than give the VM up.
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// attachQMP connects once and reads the greeting.
func attachQMP(path string, deadline time.Time, onEvent func(string, json.RawMessage)) (*qmpClient, *bufio.Reader, error) {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(context.Background(), "unix", path)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to QMP at %s: %w", path, err)
	}
	readBy := time.Now().Add(5 * time.Second)
	if deadline.Before(readBy) {
		readBy = deadline
	}
	_ = conn.SetReadDeadline(readBy)
	r := bufio.NewReader(conn)
	line, err := r.ReadBytes('\n')
	var greeting qmpMessage
	if err == nil {
		err = json.Unmarshal(line, &greeting)
	}
	if err == nil && greeting.QMP == nil {
		err = fmt.Errorf("the first message was not a greeting: %.200q", line)
	}
	if err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("QMP greeting from %s: %w", path, err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	return &qmpClient{conn: conn, onEvent: onEvent, resp: make(chan qmpMessage, 1), done: make(chan struct{})}, r, nil
}

func (q *qmpClient) read(r *bufio.Reader) {
	defer close(q.done)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var m qmpMessage
		if json.Unmarshal(line, &m) != nil {
			continue
		}
		if m.Event != "" {
			if q.onEvent != nil {
				q.onEvent(m.Event, m.Data)
			}
			continue
		}
		select {
		case q.resp <- m:
		default: // a response nobody waits for (timed out)
		}
	}
}

var errQMPClosed = errors.New("QMP connection closed")

// execute runs one command and waits up to timeout for its answer.
func (q *qmpClient) execute(cmd string, timeout time.Duration) error {
	q.cmdMu.Lock()
	defer q.cmdMu.Unlock()
	// Drop a stale answer of an earlier timed-out command.
	select {
	case <-q.resp:
	default:
	}
	b, _ := json.Marshal(map[string]any{"execute": cmd})
	_ = q.conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("QMP %s: %w", cmd, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case m := <-q.resp:
		if m.Error != nil {
			return fmt.Errorf("QMP %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		return nil
	case <-q.done:
		return fmt.Errorf("QMP %s: %w", cmd, errQMPClosed)
	case <-t.C:
		return fmt.Errorf("QMP %s: no answer within %s", cmd, timeout)
	}
}

func (q *qmpClient) Close() error { return q.conn.Close() }
