"""What a request to the Activations tab may ask, checked: query parameters, the live probe's
body, and the JSON error answer every route gives for a request it cannot answer."""

import json
import re

from tensorboard import errors
from tensorboard import plugin_util
from tensorboard.backend import http_util
from werkzeug import wrappers

# The live probe: a POST must carry this header (a cross-site form cannot set it) and a JSON
# body of at most this size.
LIVE_HEADER = "X-Activations-Live"
LIVE_MAX_BODY = 8 << 20


class QueryError(Exception):
    """A request that cannot be answered; `code` is its HTTP status."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def arg(request, name):
    value = request.args.get(name)
    if value is None or value == "":
        raise QueryError(400, "missing query parameter %r" % name)
    return value


_DIGITS = re.compile(r"[0-9]{1,18}")


def integer(name, value):
    """A non-negative integer query value: ASCII digits only (int() would also take " 1 ",
    "+1", "1_0" and other scripts' digits)."""
    if not _DIGITS.fullmatch(value):
        raise QueryError(400, "query parameter %r must be a non-negative integer in ASCII "
                              "digits, got %r" % (name, value))
    return int(value)


def int_arg(request, name, default=None):
    value = request.args.get(name)
    if value is None and default is not None:
        return default
    return integer(name, arg(request, name))


def _refuse_json_constant(name):
    raise ValueError("%s is not a number JSON allows" % name)


def live_body(request):
    """The parsed JSON body of a live request, after the checks that need no model."""
    if request.method != "POST":
        raise QueryError(405, "the live probe answers POST requests only")
    if request.headers.get(LIVE_HEADER) != "1":
        raise QueryError(400, "a live request needs the header %s: 1" % LIVE_HEADER)
    if request.mimetype != "application/json":
        raise QueryError(400, "a live request's body must be application/json, got %r"
                         % (request.mimetype or "nothing"))
    if request.content_length is not None and request.content_length > LIVE_MAX_BODY:
        raise QueryError(400, "the body has %d bytes; a live request may send at most %d"
                         % (request.content_length, LIVE_MAX_BODY))
    data = request.stream.read(LIVE_MAX_BODY + 1)
    if len(data) > LIVE_MAX_BODY:
        raise QueryError(400, "the body is over %d bytes, the most a live request may send"
                         % LIVE_MAX_BODY)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_refuse_json_constant)
    except (UnicodeDecodeError, ValueError) as error:
        raise QueryError(400, "the body is not valid JSON: %s" % error) from None


def handler(method):
    """A werkzeug app that answers QueryError as JSON {"error": ...} with its code."""

    @wrappers.Request.application
    def handle(self, request):
        try:
            return method(self, request)
        except QueryError as error:
            return http_util.Respond(request, {"error": str(error)}, "application/json",
                                     code=error.code)
        except errors.PublicError as error:  # e.g. a loader refusing a blob key
            return http_util.Respond(request, {"error": str(error)}, "application/json",
                                     code=error.http_code)

    handle.__name__ = method.__name__
    handle.__doc__ = method.__doc__
    return handle


def context(request):
    return plugin_util.context(request.environ)


def experiment(request):
    return plugin_util.experiment_id(request.environ)
