"""The few typed errors that end a request, each with its HTTP status: a client's (4xx, ``ClientError``) or
the service's own (500, ``RequestFailed``)."""

from __future__ import annotations


class RequestError(Exception):
    """One request the service does not answer with a verdict; it is answered alone, with ``status``.

    ``error`` is a short stable name; ``detail`` says what was wrong and, for a client's error, what is
    accepted. The JSON body is built by handler/answers.py.
    """

    status = 400
    error = "bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def fields(self) -> dict:
        """Values the body carries beside ``error`` and ``detail``, by name (none unless a kind says so)."""
        return {}


class ClientError(RequestError):
    """A request the service cannot answer because of what the client sent: a 4xx."""


class RequestFailed(RequestError):
    """Not the client's fault: analysing this one request raised something unexpected. It is answered
    alone with a 500 whose ``error_id`` the worker's log line also carries; its batch-mates go on."""

    status = 500
    error = "internal error"

    def __init__(self, error_id: str) -> None:
        super().__init__(f"analysing this request failed unexpectedly (error id {error_id}); the other requests "
                         "of its batch were answered. Report the error id: the worker log has the details.")
        self.error_id = error_id


class EmptyInput(ClientError):
    status = 400
    error = "empty input"


class MissingImage(ClientError):
    status = 400
    error = "no image in request"


class UnsupportedMediaType(ClientError):
    status = 415
    error = "not an image"


class CorruptImage(ClientError):
    status = 400
    error = "corrupt image"


class ImageTooLarge(ClientError):
    status = 413
    error = "image too large"


class PayloadTooLarge(ClientError):
    status = 413
    error = "payload too large"


class BadOption(ClientError):
    status = 400
    error = "bad option"


class NoFaceFound(ClientError):
    status = 422
    error = "no face found"


class UnsupportedVideo(ClientError):
    status = 415
    error = "unsupported video"


class VideoElsewhere(ClientError):
    """A video sent to the image registration, whose workers do not analyse videos (handler/roles.py)."""

    status = 415
    error = "video on the image endpoint"

    def __init__(self, endpoint: str) -> None:
        super().__init__(f"videos are analysed by their own workers: send this video to {endpoint}")
        self.endpoint = endpoint

    def fields(self) -> dict:
        return {"endpoint": self.endpoint}


class CorruptVideo(ClientError):
    status = 400
    error = "corrupt video"


class VideoTooLarge(ClientError):
    status = 413
    error = "video too large"


class VideoTooSlow(ClientError):
    status = 422
    error = "video too slow to sample"


class NoFrames(ClientError):
    status = 422
    error = "no frames"
