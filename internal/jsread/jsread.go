// Package jsread reads JetStream streams so that a read sees every write
// acknowledged before it.
//
// JetStream's fast reads ("direct gets", which KV Get, Object Store Get and
// Stream.GetMsg use whenever a stream allows them) are answered by any
// replica of the stream, and NATS routes them to the replica nearest the
// client. On a replicated stream (Replicas > 1) that replica may not yet
// have applied a write the leader has already acknowledged, so a session
// just deleted can come back, a compare-and-set keeps reading an old
// revision, and a history read misses the newest message. A Stream here
// sends the reads of a replicated stream to the stream's leader instead
// (the STREAM.MSG.GET API, which only the leader answers), at the cost of
// the API's queue on the leader; a stream with one replica has no
// followers, so its reads stay direct.
//
// While the stream has no leader (a node holding it was lost and the
// rest are electing one) a read fails with an error that internal/retry
// treats as not sent, so a caller retries it within its deadline and
// answers 503 if the election outlasts it; it never falls back to a
// replica that may be behind.
package jsread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoLeader reports that the stream's leader did not answer: it is
// being elected, or its node is unreachable. Nothing was read; the read
// may be sent again.
var ErrNoLeader = errors.New("jsread: the stream has no reachable leader")

// tryTimeout bounds one request to the leader, so that a request lost
// with a leader that died leaves time in the caller's deadline to ask the
// next one.
const tryTimeout = 2 * time.Second

// defaultTimeout applies when the caller's context has no deadline, as
// the JetStream client's own default does.
const defaultTimeout = 5 * time.Second

// clusterNotAvailable is the server's answer while a stream's group has
// no leader (JSClusterNotAvailErr).
const clusterNotAvailable jetstream.ErrorCode = 10008

// Stream reads one stream.
type Stream struct {
	nc     *nats.Conn
	stream jetstream.Stream
	// getSubject is the leader-answered message get API subject.
	getSubject string
	// leader is true when the stream has replicas that may lag.
	leader bool
}

// Open looks the stream up and decides, from its replica count, how it
// is read. A lookup lost while the cluster elects a leader is sent again
// within ctx's deadline.
func Open(ctx context.Context, js jetstream.JetStream, name string) (*Stream, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	var st jetstream.Stream
	var err error
	for {
		err = try(ctx, func(ctx context.Context) (err error) {
			st, err = js.Stream(ctx, name)
			return err
		})
		if !errors.Is(err, ErrNoLeader) || ctx.Err() != nil {
			break
		}
		// "No responders" comes back at once: pause before asking again.
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	if err != nil {
		return nil, fmt.Errorf("jsread: stream %s: %w", name, err)
	}
	return Wrap(js, st), nil
}

// Wrap reads st, a stream js has just looked up or created (its cached
// info tells the replica count).
func Wrap(js jetstream.JetStream, st jetstream.Stream) *Stream {
	info := st.CachedInfo()
	return &Stream{
		nc:         js.Conn(),
		stream:     st,
		getSubject: apiPrefix(js.Options()) + "STREAM.MSG.GET." + info.Config.Name,
		leader:     info.Config.Replicas > 1,
	}
}

// apiPrefix is the JetStream API prefix js sends its requests under.
func apiPrefix(o jetstream.JetStreamOptions) string {
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

// Replicated reports whether reads go to the leader.
func (s *Stream) Replicated() bool { return s.leader }

// Last returns the newest message stored under subject, or
// jetstream.ErrMsgNotFound.
func (s *Stream) Last(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	if !s.leader {
		return s.stream.GetLastMsgForSubject(ctx, subject)
	}
	return s.get(ctx, getRequest{LastFor: subject})
}

// Next returns the first message stored under subject at sequence seq or
// after it, or jetstream.ErrMsgNotFound.
func (s *Stream) Next(ctx context.Context, seq uint64, subject string) (*jetstream.RawStreamMsg, error) {
	if !s.leader {
		return s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
	}
	return s.get(ctx, getRequest{Seq: seq, NextFor: subject})
}

// Subjects counts the stored messages of every subject that matches
// filter. The stream's leader answers it, replicated or not.
func (s *Stream) Subjects(ctx context.Context, filter string) (map[string]uint64, error) {
	var info *jetstream.StreamInfo
	err := try(ctx, func(ctx context.Context) (err error) {
		info, err = s.stream.Info(ctx, jetstream.WithSubjectFilter(filter))
		return err
	})
	if err != nil {
		return nil, err
	}
	return info.State.Subjects, nil
}

// try runs one request to a leader with its own timeout: a JetStream API
// request that reaches no leader (one is being elected) is not answered
// at all, and would otherwise wait out the caller's whole deadline. A try
// that times out while ctx has time left is ErrNoLeader.
func try(ctx context.Context, f func(ctx context.Context) error) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	tctx, cancel := context.WithTimeout(ctx, tryTimeout)
	defer cancel()
	err := f(tctx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)):
		return ErrNoLeader // only this try's time ran out
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	return err
}

// getRequest is the message get API's request.
type getRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

// getResponse is the message get API's answer.
type getResponse struct {
	Error   *jetstream.APIError `json:"error"`
	Message *struct {
		Subject  string    `json:"subject"`
		Sequence uint64    `json:"seq"`
		Header   []byte    `json:"hdrs,omitempty"`
		Data     []byte    `json:"data,omitempty"`
		Time     time.Time `json:"time"`
	} `json:"message"`
}

// get asks the stream's leader.
func (s *Stream) get(ctx context.Context, req getRequest) (*jetstream.RawStreamMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var reply *nats.Msg
	err = try(ctx, func(ctx context.Context) (err error) {
		reply, err = s.nc.RequestWithContext(ctx, s.getSubject, body)
		return err
	})
	if err != nil {
		return nil, err
	}
	var resp getResponse
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("jsread: message get: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, jetstream.ErrMsgNotFound
	case resp.Error != nil && resp.Error.ErrorCode == clusterNotAvailable:
		return nil, fmt.Errorf("%w: %w", ErrNoLeader, resp.Error)
	case resp.Error != nil:
		return nil, resp.Error
	case resp.Message == nil:
		return nil, jetstream.ErrInvalidJetStreamResponse
	}
	m := resp.Message
	var hdr nats.Header
	if len(m.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(m.Header); err != nil {
			return nil, fmt.Errorf("jsread: message headers: %w", err)
		}
	}
	return &jetstream.RawStreamMsg{Subject: m.Subject, Sequence: m.Sequence, Header: hdr, Data: m.Data, Time: m.Time}, nil
}
