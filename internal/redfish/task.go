package redfish

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// TaskMessage is one entry of a Task's Messages.
type TaskMessage struct {
	MessageID string   `json:"MessageId"`
	Message   string   `json:"Message"`
	Severity  string   `json:"Severity"`
	Args      []string `json:"MessageArgs"`
}

func (m TaskMessage) String() string {
	if m.Message != "" {
		return m.Message
	}
	if len(m.Args) > 0 {
		// iLO sends only MessageId and MessageArgs.
		return m.MessageID + ": " + strings.Join(m.Args, ", ")
	}
	return m.MessageID
}

// TaskError is a BMC task (or iDRAC job) that ended without success. It
// matches ErrTaskFailed and carries the task's messages.
type TaskError struct {
	What     string // what the task was doing, e.g. "creating volume os"
	State    string // TaskState or JobState
	Messages []TaskMessage
}

func (e *TaskError) Error() string {
	msgs := make([]string, 0, len(e.Messages))
	for _, m := range e.Messages {
		if s := strings.TrimSpace(m.String()); s != "" {
			msgs = append(msgs, s)
		}
	}
	out := fmt.Sprintf("%s: BMC task ended %s", e.What, e.State)
	if len(msgs) > 0 {
		out += ": " + strings.Join(msgs, "; ")
	}
	return out
}

func (e *TaskError) Is(target error) bool { return target == ErrTaskFailed }

type taskDoc struct {
	ODataID    string        `json:"@odata.id"`
	TaskState  string        `json:"TaskState"`
	TaskStatus string        `json:"TaskStatus"`
	Messages   []TaskMessage `json:"Messages"`
	Payload    struct {
		TargetURI string `json:"TargetUri"`
	} `json:"Payload"`
}

// taskResult is how a finished asynchronous operation ended: the URI of
// the resource it produced when the BMC says.
type taskResult struct {
	TargetURI string
}

// waitTask follows a DSP0266 task monitor: 202 while the operation runs,
// then the Task (or the operation's own response). It polls at
// PollInterval under the client's context.
func (c *Client) waitTask(monitor, what string) (*taskResult, error) {
	monitor = c.relative(monitor)
	for {
		resp, err := c.send(http.MethodGet, monitor, nil, nil, sendOpts{})
		if err != nil {
			// Some BMCs drop the monitor once the task is done.
			if errors.Is(err, ErrNotFound) {
				return &taskResult{}, nil
			}
			return nil, fmt.Errorf("%s: following task %s: %w", what, pathOnly(monitor), err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		drain(resp)
		var t taskDoc
		_ = json.Unmarshal(body, &t)
		if resp.StatusCode != http.StatusAccepted && !isRunning(t.TaskState) {
			return finishTask(t, what)
		}
		if err := c.pollWait("waiting for task "+pathOnly(monitor), what); err != nil {
			return nil, err
		}
	}
}

func isRunning(state string) bool {
	switch state {
	case "New", "Starting", "Running", "Pending", "Suspended", "Interrupted", "Stopping", "Service":
		return true
	}
	return false
}

func finishTask(t taskDoc, what string) (*taskResult, error) {
	switch t.TaskState {
	case "", "Completed":
		if t.TaskStatus == "Critical" {
			return nil, &TaskError{What: what, State: "Completed/Critical", Messages: t.Messages}
		}
		target := t.Payload.TargetURI
		if t.TaskState == "" {
			target = t.ODataID // the operation's own response: the created resource
		}
		return &taskResult{TargetURI: target}, nil
	default: // Exception, Killed, Cancelled
		return nil, &TaskError{What: what, State: t.TaskState, Messages: t.Messages}
	}
}

// pollWait sleeps one PollInterval under the client's context.
func (c *Client) pollWait(doing, what string) error {
	if err := c.wait(c.s.cfg.PollInterval); err != nil {
		return &opError{kind: ErrTimeout, msg: what + ": " + doing, err: c.ctx.Err()}
	}
	return nil
}

type dellJobDoc struct {
	JobState        string `json:"JobState"`
	Message         string `json:"Message"`
	MessageID       string `json:"MessageId"`
	PercentComplete int    `json:"PercentComplete"`
}

// waitDellJob polls an iDRAC job until it leaves Scheduled/Running. A job
// that completed with errors is not an error here: the caller verifies
// what was applied and names the attributes.
func (c *Client) waitDellJob(uri, what string) (string, error) {
	uri = c.relative(uri)
	for {
		var j dellJobDoc
		if err := c.getJSON(uri, &j); err != nil {
			return "", fmt.Errorf("%s: reading job %s: %w", what, pathOnly(uri), err)
		}
		switch j.JobState {
		case "Completed", "CompletedWithErrors":
			return j.Message, nil
		case "Failed", "Cancelled", "Aborted":
			return "", &TaskError{What: what, State: j.JobState, Messages: []TaskMessage{{MessageID: j.MessageID, Message: j.Message}}}
		}
		if err := c.pollWait("waiting for job "+pathOnly(uri), what); err != nil {
			return "", err
		}
	}
}

// relative turns an absolute Location into a path on this BMC.
func (c *Client) relative(uri string) string {
	if rest, ok := strings.CutPrefix(uri, c.s.endpoint.BaseURL); ok {
		return rest
	}
	if i := strings.Index(uri, "/redfish/"); i > 0 && strings.Contains(uri[:i], "://") {
		return uri[i:]
	}
	return uri
}
