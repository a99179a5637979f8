"""Entra ID error responses, shaped as Entra ID shapes them.

Each entry: the OAuth ``error`` value, the HTTP status, and the description
template (the text after ``AADSTSnnnn: ``). Real Entra ID appends trace id,
correlation id and timestamp to the description; so do we.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from typing import Any

ERRORS: dict[int, tuple[str, int, str]] = {
    50034: (
        "invalid_grant",
        400,
        "The user account {user} does not exist in the {tenant} directory. To sign into "
        "this application, the account must be added to the directory.",
    ),
    50011: (
        "invalid_request",
        400,
        "The redirect URI '{redirect_uri}' specified in the request does not match the "
        "redirect URIs configured for the application '{client_id}'. Make sure the redirect "
        "URI sent in the request matches one added to your application in the Azure portal. "
        "Navigate to https://aka.ms/redirectUriMismatchError to learn more about how to fix "
        "this.",
    ),
    50058: (
        "login_required",
        400,
        "A silent sign-in request was sent but no user is signed in.",
    ),
    50076: (
        "invalid_grant",
        400,
        "Due to a configuration change made by your administrator, or because you moved "
        "to a new location, you must use multi-factor authentication to access '{resource}'.",
    ),
    50126: (
        "invalid_grant",
        400,
        "Error validating credentials due to invalid username or password.",
    ),
    50196: (
        "temporarily_unavailable",
        429,
        "The server terminated an operation because it encountered a client request loop. "
        "Please contact your app vendor.",
    ),
    54005: (
        "invalid_grant",
        400,
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code "
        "or use an existing refresh token.",
    ),
    65001: (
        "invalid_grant",
        400,
        "The user or administrator has not consented to use the application with ID "
        "'{client_id}' named '{app_name}'. Send an interactive authorization request for "
        "this user and resource.",
    ),
    65004: ("access_denied", 400, "User declined to consent to access the app."),
    70000: (
        "invalid_grant",
        400,
        "The request was denied because one or more grants are expired or invalid.",
    ),
    70002: (
        "invalid_client",
        400,
        "Error validating credentials. AADSTS50011: The reply address '{redirect_uri}' does "
        "not match the reply address '{expected}' provided when requesting Authorization code.",
    ),
    70003: (
        "unsupported_grant_type",
        400,
        "The app requested an unsupported grant type '{grant}'.",
    ),
    70008: (
        "invalid_grant",
        400,
        "The provided authorization code or refresh token has expired due to inactivity. "
        "Send a new interactive authorization request for this user and resource.",
    ),
    70011: (
        "invalid_scope",
        400,
        "The provided request must include a 'scope' input parameter. The provided value "
        "for the input parameter 'scope' is not valid. The scope {scope} is not valid.",
    ),
    70016: (
        "authorization_pending",
        400,
        "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
    ),
    70020: (
        "expired_token",
        400,
        "The provided value for the input parameter 'device_code' is not valid. "
        "Device code expired.",
    ),
    70021: (
        "invalid_request",
        400,
        "No matching federated identity record found for presented assertion. Assertion "
        "Issuer: '{issuer}'. Assertion Subject: '{subject}'. Assertion Audience: "
        "'{audience}'.",
    ),
    70022: ("slow_down", 400, "OAuth 2.0 device flow error. Polling too fast; slow down."),
    90002: (
        "invalid_request",
        400,
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
        "and are signing into the correct cloud. Check with your subscription "
        "administrator, this may happen if there are no active subscriptions for the "
        "tenant.",
    ),
    900144: (
        "invalid_request",
        400,
        "The request body must contain the following parameter: '{parameter}'.",
    ),
    500121: (
        "invalid_grant",
        400,
        "Authentication failed during strong authentication request.",
    ),
    500011: (
        "invalid_resource",
        400,
        "The resource principal named {resource} was not found in the tenant named "
        "{tenant}. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You might "
        "have sent your authentication request to the wrong tenant.",
    ),
    501481: (
        "invalid_grant",
        400,
        "The Code_Verifier does not match the code_challenge supplied in the authorization "
        "request.",
    ),
    501491: ("invalid_request", 400, "Invalid size of Code_Challenge parameter."),
    700016: (
        "unauthorized_client",
        400,
        "Application with identifier '{client_id}' was not found in the directory "
        "'{tenant}'. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You may "
        "have sent your authentication request to the wrong tenant.",
    ),
    700054: (
        "unsupported_response_type",
        400,
        "response_type '{response_type}' is not enabled for the application.",
    ),
    700021: (
        "invalid_client",
        401,
        "Client assertion application identifier doesn't match 'client_id' parameter.",
    ),
    700023: (
        "invalid_client",
        401,
        "Client assertion audience claim does not match Realm issuer. Review the "
        "documentation at https://aka.ms/certCreds .",
    ),
    700024: ("invalid_client", 401, "Client assertion is not within its valid time range."),
    700027: (
        "invalid_client",
        401,
        "The certificate with identifier used to sign the client assertion is not "
        "registered on application. [Reason - {reason}, Thumbprint of key used by "
        "client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or "
        "directly use MS Graph to see configured keys for app Id '{client_id}'.]",
    ),
    1002012: (
        "invalid_scope",
        400,
        "The provided value for scope {scope} is not valid. Client credential flows "
        "must have a scope value with /.default suffixed to the resource identifier "
        "(application ID URI).",
    ),
    9002313: ("invalid_request", 400, "Invalid request. Request is malformed or invalid."),
    7000215: (
        "invalid_client",
        401,
        "Invalid client secret provided. Ensure the secret being sent in the request is "
        "the client secret value, not the client secret ID, for a secret added to app "
        "'{client_id}'.",
    ),
    7000218: (
        "invalid_client",
        401,
        "The request body must contain the following parameter: 'client_assertion' or "
        "'client_secret'.",
    ),
    7000222: (
        "invalid_client",
        401,
        "The provided client secret keys for app '{client_id}' are expired. Visit the "
        "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, "
        "or consider using certificate credentials for added security: "
        "https://aka.ms/certCreds.",
    ),
}


class EntraError(Exception):
    """Raised inside the emulator's identity handlers; becomes an Entra-shaped response."""

    def __init__(self, code: int, **fields: str) -> None:
        super().__init__(code)
        self.code = code
        self.fields = fields

    def body(self, correlation_id: str | None, error_uri_base: str) -> tuple[int, dict[str, Any]]:
        """HTTP status and JSON body exactly as Entra ID lays them out."""
        error, status, template = ERRORS[self.code]
        trace_id = str(uuid.uuid4())
        correlation_id = correlation_id or str(uuid.uuid4())
        now = _dt.datetime.now(_dt.UTC)
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        text = template.format_map(_Missing(self.fields))
        description = (
            f"AADSTS{self.code}: {text} Trace ID: {trace_id} Correlation ID: {correlation_id} "
            f"Timestamp: {stamp}"
        )
        body: dict[str, Any] = {
            "error": error,
            "error_description": description,
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{error_uri_base}/error?code={self.code}",
        }
        if self.code == 70016 and self.fields.get("reason") == "declined":
            body["error"] = "authorization_declined"
            body["error_description"] = body["error_description"].replace(
                "Authorization is pending. Continue polling.", "The user declined the sign-in."
            )
        if self.code == 70002:  # Entra names both: the credential check and its cause
            body["error_codes"] = [70002, 50011]
        if self.code == 50076:
            body["suberror"] = "basic_action"
            body["claims"] = '{"access_token":{"capolids":{"essential":true,"values":["mfa"]}}}'
        return status, body


class _Missing(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"
