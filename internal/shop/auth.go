package shop

import (
	"net/http"
	"regexp"

	"github.com/unstuck-dev/unstuck/session"
)

// validUser bounds demo user names: they appear in pages, chat and
// presence, so keep them short and plain.
var validUser = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

const errBadUser = shopError("user must be 1 to 64 letters, digits, '_', '.' or '-'")

// login rotates the session ID (no fixation: a token planted before login is
// worthless after it) and binds the session to the user.
func login(r *http.Request, user string) error {
	if !validUser.MatchString(user) {
		return errBadUser
	}
	if err := session.RenewToken(r.Context()); err != nil {
		return err
	}
	return session.SetUser(r.Context(), user)
}

func (s *Shop) apiLogin(w http.ResponseWriter, r *http.Request) {
	var in struct {
		User string `json:"user"`
	}
	if !decodeJSON(w, r, &in) {
		return
	}
	if err := login(r, in.User); err != nil {
		if err == errBadUser {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.sessionFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": in.User, "instance": s.cfg.Instance})
}

func (s *Shop) apiLogout(w http.ResponseWriter, r *http.Request) {
	if err := session.Destroy(r.Context()); err != nil {
		s.sessionFailed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Shop) apiMe(w http.ResponseWriter, r *http.Request) {
	user, err := session.User(r.Context())
	if err != nil {
		s.sessionFailed(w, err)
		return
	}
	if user == "" {
		writeError(w, http.StatusUnauthorized, "not logged in")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": user, "instance": s.cfg.Instance})
}
