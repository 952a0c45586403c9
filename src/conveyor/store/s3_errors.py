"""boto3's exceptions, translated at the boundary into errors that name the store and what to do.

>>> translate(ClientError({"Error": {"Code": "NoSuchBucket"}}, "GetObject"),
...           "cannot read", "s3://missing/x", None)                # doctest: +SKIP
StoreError('the bucket of the artifact store s3://missing/x does not exist ...')
"""

from __future__ import annotations

from typing import Literal

from conveyor.errors import ConveyorError, StoreError

__all__ = ["translate"]

#: Error codes that mean the credentials (or their rights) are the problem.
_REFUSED = {
    "AccessDenied",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidAccessKeyId",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "403",
}
_MISSING = {"404", "NoSuchKey", "NotFound"}
_CREDENTIALS_HINT = (
    "Check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and that they may "
    "read, write, list and delete in the bucket."
)


def translate(
    exc: Exception, what: str, location: str, endpoint: str | None
) -> ConveyorError | Literal["missing"] | None:
    """The Conveyor error for a boto3 exception (``"missing"``: no such object; None: not boto's).

    ``what`` says what was being done ("cannot read"), ``location`` is the
    store's ``s3://bucket/prefix`` and ``endpoint`` its server (None: AWS).
    """
    from botocore import exceptions as boto

    at = f" (endpoint {endpoint})" if endpoint else ""
    if isinstance(exc, boto.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "")) or "error"
        message = str(error.get("Message", "")) or str(exc)
        if code in _MISSING:
            return "missing"
        if code == "NoSuchBucket":
            return StoreError(
                f"the bucket of the artifact store {location} does not exist{at}",
                hint="Create the bucket, or correct CONVEYOR_ARTIFACT_ROOT.",
            )
        if code in _REFUSED:
            return StoreError(
                f"the artifact store {location}{at} refused the request ({code}): {message}",
                hint=_CREDENTIALS_HINT,
            )
        return StoreError(f"{what} the artifact store {location}{at}: {code}: {message}")
    if isinstance(exc, boto.NoCredentialsError | boto.PartialCredentialsError):
        return StoreError(
            f"no usable AWS credentials for the artifact store {location}: {exc}",
            hint=_CREDENTIALS_HINT,
        )
    if isinstance(
        exc,
        boto.EndpointConnectionError
        | boto.ConnectTimeoutError
        | boto.ReadTimeoutError
        | boto.ConnectionClosedError,
    ):
        return StoreError(
            f"the artifact store {location}{at} does not answer: {exc}",
            hint="Check that the server runs and that CONVEYOR_S3_ENDPOINT_URL "
            "(or AWS_ENDPOINT_URL) points at it.",
        )
    if isinstance(exc, boto.BotoCoreError):
        return StoreError(f"{what} the artifact store {location}{at}: {exc}")
    return None
