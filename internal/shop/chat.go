package shop

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/unstuck-dev/unstuck/realtime"
	"github.com/unstuck-dev/unstuck/session"
)

// Authorize is the shop's realtime.Config.Authorize. A WebSocket client
// may follow the chat room (and its presence) and its own user channel,
// but publishes nothing itself: a message's sender is part of its data, so
// a client publishing straight to the channel could post under any name.
// Posts go through POST /api/chat/messages, which takes the sender from
// the session.
func Authorize(_ context.Context, _ string, op realtime.Op, channel string) error {
	if op == realtime.OpPublish {
		return errPostThroughAPI
	}
	if channel == ChatChannel || strings.HasPrefix(channel, realtime.UserChannelPrefix) {
		return nil // the hub itself keeps $user:u to user u
	}
	return errUnknownChannel
}

const (
	errPostThroughAPI = shopError("post chat messages with POST /api/chat/messages")
	errUnknownChannel = shopError("the shop has no such channel")
)

// maxChatText bounds one chat message, in characters.
const maxChatText = 500

// chatHistoryLimit bounds one page of chat history.
const chatHistoryLimit = 200

// ChatMessage is one chat message as published on the realtime channel and
// listed by the history API.
type ChatMessage struct {
	Offset uint64 `json:"offset,omitempty"`
	User   string `json:"user"`
	Text   string `json:"text"`
	// Instance is where it was posted, to show messages crossing instances.
	Instance string `json:"instance,omitempty"`
	Time     int64  `json:"ts"`
}

func validChat(text string) (string, bool) {
	text = strings.TrimSpace(text)
	return text, text != "" && utf8.ValidString(text) && utf8.RuneCountInString(text) <= maxChatText
}

// chatError is a chat post the shop refuses or fails itself: the
// client's mistake (4xx) or the chat backplane's outage (503).
type chatError struct {
	status int
	msg    string
}

func (e chatError) Error() string { return e.msg }

// postChat publishes a message from the logged-in user; the offset the
// backplane assigned comes back so the poster can order it with the rest.
// It fails with a chatError, or with the session's error.
func (s *Shop) postChat(r *http.Request, text string) (ChatMessage, error) {
	user, err := session.User(r.Context())
	if err != nil {
		return ChatMessage{}, err
	}
	if user == "" {
		return ChatMessage{}, chatError{http.StatusUnauthorized, "log in to chat"}
	}
	text, ok := validChat(text)
	if !ok {
		return ChatMessage{}, chatError{http.StatusBadRequest, "text must be 1 to 500 characters of UTF-8"}
	}
	msg := ChatMessage{User: user, Text: text, Instance: s.cfg.Instance, Time: time.Now().UnixMilli()}
	data, _ := json.Marshal(msg)
	ctx, cancel := storeCtx(r.Context())
	defer cancel()
	pub, err := s.cfg.Hub.Publish(ctx, ChatChannel, data)
	if err != nil {
		s.log.Warn("chat publish failed", "err", err)
		return ChatMessage{}, chatError{http.StatusServiceUnavailable, "chat backplane unavailable: " + err.Error()}
	}
	msg.Offset = pub.Offset
	return msg, nil
}

func (s *Shop) apiChatPost(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Text string `json:"text"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	msg, err := s.postChat(r, in.Text)
	var ce chatError
	switch {
	case errors.As(err, &ce):
		if ce.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, ce.status, ce.msg)
	case err != nil:
		s.sessionFailed(w, err)
	default:
		writeJSON(w, http.StatusCreated, msg)
	}
}

// apiChatList answers GET /api/chat/messages?since=OFFSET with the messages
// after OFFSET from the channel's history, and the channel's epoch: a client
// whose epoch differs must reload, history having been lost meanwhile.
func (s *Shop) apiChatList(w http.ResponseWriter, r *http.Request) {
	var since uint64
	if v := r.URL.Query().Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since must be a non-negative whole number")
			return
		}
		since = n
	}
	ctx, cancel := storeCtx(r.Context())
	defer cancel()
	h, err := s.cfg.Broker.History(ctx, ChatChannel, since, chatHistoryLimit)
	if err != nil {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "chat history unavailable: "+err.Error())
		return
	}
	msgs := make([]ChatMessage, 0, len(h.Publications))
	for _, p := range h.Publications {
		var m ChatMessage
		if json.Unmarshal(p.Data, &m) != nil {
			continue // not a chat message; the channel is the shop's own
		}
		m.Offset = p.Offset
		msgs = append(msgs, m)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"messages": msgs,
		"epoch":    h.Top.Epoch,
		"complete": h.Complete,
	})
}
