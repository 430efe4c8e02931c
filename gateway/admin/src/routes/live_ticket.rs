//! `POST /admin/api/live/ticket`: trades the bearer token for a ticket that opens one live
//! stream, so that the token never travels in the stream's URL (see `auth::tickets`).

use axum::Json;
use axum::extract::State;

use crate::AdminState;
use crate::auth::LiveTicket;
use crate::error::ErrorBody;

#[utoipa::path(post, path = "/admin/api/live/ticket", tag = "operations",
    responses(
        (status = 200, description = "A ticket for `GET /admin/api/live?ticket=<ticket>`: 256 random bits, \
                                      good for one stream opened within `expires_in` seconds (60)",
         body = LiveTicket),
        (status = 429, description = "Too many wrong admin tokens from this client address: it is locked out \
                                      (`Retry-After` says for how long)", body = ErrorBody),
    ))]
pub(crate) async fn issue_live_ticket(State(state): State<AdminState>) -> Json<LiveTicket> {
    Json(state.auth.issue_ticket())
}
