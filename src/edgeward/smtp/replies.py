"""The standard replies of the SMTP core, as ``Reply`` constants.

Basic codes follow RFC 5321 §4.2 and §4.5.3.1.10; enhanced codes follow RFC 3463 (and RFC 6531
for X.6.7). Choices where the RFCs leave room:

* ``354`` carries no enhanced code: RFC 2034 §3 asks for one on 2xx, 4xx and 5xx replies only,
  and 3xx replies are intermediate.
* Replies to HELO/EHLO and the greeting carry none either (RFC 2034 §3); the connection drops
  the enhanced code of a positive HELO/EHLO reply when it renders it.
* A command line that is too long is ``500 5.5.2``: RFC 5321 §4.5.3.1.10 gives "500 Line too
  long", and X.5.2 (syntax error) is the closest RFC 3463 detail. X.5.6 is registered for the
  AUTH exchange only (RFC 4954), so it is not used for command lines.
* An unknown verb is ``500 5.5.1`` (X.5.1 "invalid command"); a malformed line (NUL, bare CR,
  bare LF, invalid UTF-8) is ``500 5.5.2``; malformed arguments are ``501 5.5.4``; a malformed
  address is ``501 5.1.7`` (sender) or ``501 5.1.3`` (recipient); an unknown MAIL/RCPT
  parameter is ``555 5.5.4`` (RFC 5321 §4.1.1.11).
* DATA or BDAT after MAIL with no accepted RCPT is ``554 5.5.1`` "No valid recipients"
  (RFC 5321 §3.3 allows 503 or 554); other ordering errors are ``503 5.5.1``.
* A message refused for bare CR/LF or NUL is ``550 5.6.0`` (X.6.0, media error).
"""

from __future__ import annotations

from edgeward.types import Reply

# Positive
OK = Reply(250, "2.0.0", "OK")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = Reply(250, "2.1.5", "Recipient OK")
RESET_OK = Reply(250, "2.0.0", "Reset OK")
CHUNK_OK = Reply(250, "2.0.0", "Chunk received")
START_MAIL_INPUT = Reply(354, None, "End data with <CR><LF>.<CR><LF>")
READY_TO_START_TLS = Reply(220, "2.0.0", "Ready to start TLS")
SERVICE_CLOSING = Reply(221, "2.0.0", "Service closing transmission channel")
HELP = Reply(214, "2.0.0", "See RFC 5321")
CANNOT_VRFY = Reply(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")

# Transient
SERVICE_UNAVAILABLE = Reply(421, "4.3.2", "Service not available, closing transmission channel")
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing transmission channel")
TOO_MANY_COMMANDS = Reply(421, "4.7.0", "Too many commands, closing transmission channel")
CROSS_PROTOCOL = Reply(421, "4.7.0", "This is an SMTP server, closing transmission channel")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
TLS_NOT_AVAILABLE = Reply(454, "4.7.0", "TLS not available due to temporary reason")

# Permanent: command syntax
COMMAND_UNRECOGNIZED = Reply(500, "5.5.1", "Command unrecognized")
SYNTAX_ERROR = Reply(500, "5.5.2", "Syntax error")
LINE_TOO_LONG = Reply(500, "5.5.2", "Line too long")
BARE_LF_IN_COMMAND = Reply(500, "5.5.2", "Bare LF in command line, lines must end with CRLF")
BAD_CHARACTER_IN_COMMAND = Reply(500, "5.5.2", "NUL or bare CR in command line")
INVALID_UTF8 = Reply(500, "5.5.2", "Command line is not valid UTF-8")
PARAMETER_SYNTAX = Reply(501, "5.5.4", "Syntax error in parameters or arguments")
HELO_SYNTAX = Reply(501, "5.5.4", "Syntax: HELO/EHLO hostname")
MAIL_SYNTAX = Reply(501, "5.5.4", "Syntax: MAIL FROM:<address> [parameters]")
RCPT_SYNTAX = Reply(501, "5.5.4", "Syntax: RCPT TO:<address> [parameters]")
BDAT_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]")
VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY string")
AUTH_SYNTAX = Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]")
NO_ARGUMENTS = Reply(501, "5.5.4", "This command takes no arguments")
BAD_SENDER_SYNTAX = Reply(501, "5.1.7", "Bad sender address syntax")
BAD_RECIPIENT_SYNTAX = Reply(501, "5.1.3", "Bad recipient address syntax")
SENDER_PATH_TOO_LONG = Reply(501, "5.1.7", "Path too long")
RECIPIENT_PATH_TOO_LONG = Reply(501, "5.1.3", "Path too long")
NON_ASCII_ADDRESS = Reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8")
UNKNOWN_PARAMETER = Reply(555, "5.5.4", "MAIL FROM/RCPT TO parameters not recognized or not implemented")
NOT_IMPLEMENTED = Reply(502, "5.5.1", "Command not implemented")

# Permanent: sequence
BAD_SEQUENCE = Reply(503, "5.5.1", "Bad sequence of commands")
NEED_HELO = Reply(503, "5.5.1", "Send HELO/EHLO first")
NEED_MAIL = Reply(503, "5.5.1", "Need MAIL command")
NESTED_MAIL = Reply(503, "5.5.1", "Nested MAIL command")
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "No valid recipients")
NOT_IN_TRANSACTION = Reply(503, "5.5.1", "Command not permitted during a mail transaction")
ALREADY_AUTHENTICATED = Reply(503, "5.5.1", "Already authenticated")
AUTH_LINE_TOO_LONG = Reply(500, "5.5.6", "Authentication exchange line is too long")
AUTH_BAD_LINE = Reply(501, "5.5.2", "Cannot decode the authentication response")
DATA_IN_BDAT = Reply(503, "5.5.1", "DATA not permitted in a BDAT transaction")
BINARYMIME_NEEDS_BDAT = Reply(503, "5.5.1", "BODY=BINARYMIME requires BDAT")
TLS_ALREADY_ACTIVE = Reply(503, "5.5.1", "TLS already active")
NO_SERVICE = Reply(503, "5.5.1", "No SMTP service here, send QUIT")

# Permanent: message
MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
HEADER_TOO_BIG = Reply(552, "5.3.4", "Message header size exceeds limit")
BARE_LINE_ENDING = Reply(550, "5.6.0", "Message contains bare CR or LF, lines must end with CRLF")
NUL_IN_MESSAGE = Reply(550, "5.6.0", "Message contains NUL characters")
