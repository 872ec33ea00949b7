/*
 * monitor_proto.h - the monitor protocol, version 0 (docs/monitor-protocol.md).
 * The only header smtpd and manager share.
 */
#ifndef MONITOR_PROTO_H
#define MONITOR_PROTO_H

#define MON_SIG0            0xFF
#define MON_SIG1            0xFE
#define MON_VERSION         0x00
#define MON_REQUEST_LEN     14
#define MON_RESPONSE_LEN    15
#define MON_TOKEN_LEN       8
/* A datagram shorter than this, or of MON_RESPONSE_LEN bytes or more, is
 * never answered: it cannot be a request, and may be someone's response. */
#define MON_MIN_ANSWERED    5
/* The documented default token (= DEFAULT_MONITOR_TOKEN in smtpd_args.h). */
#define MON_DEFAULT_TOKEN   "smtpd"
/* The documented default UDP port (smtpd -p, manager -p). */
#define MON_DEFAULT_PORT    6060

/* request offsets */
#define MON_REQ_ID          3      /* 2 bytes, echoed */
#define MON_REQ_TOKEN       5      /* 8 bytes */
#define MON_REQ_CMD         13

/* response offsets */
#define MON_RES_ID          3
#define MON_RES_STATUS      5
#define MON_RES_AMOUNT      6      /* 8 bytes, big-endian */
#define MON_RES_BOOL        14

enum mon_command {
    MON_CMD_HISTORICAL   = 0x00,
    MON_CMD_CONCURRENT   = 0x01,
    MON_CMD_BYTES        = 0x02,
    MON_CMD_STATUS       = 0x03,   /* transformations on? */
    MON_CMD_ON           = 0x04,
    MON_CMD_OFF          = 0x05,
    MON_CMD_MESSAGES     = 0x06,   /* messages delivered */
    MON_CMD_RECIPIENTS   = 0x07,   /* recipient copies delivered */
    MON_CMD_RCPT_REJECTED = 0x08,
    MON_CMD_AUTH_FAILURES = 0x09,
    MON_CMD_TRANSFORM_FAILURES = 0x0A,
    MON_CMD_UPTIME       = 0x0B,   /* seconds */
    MON_CMD_DROPPED      = 0x0C,   /* monitor datagrams left unanswered */
    MON_CMD_TLS_SESSIONS = 0x0D,   /* TLS handshakes completed */
    MON_CMD_AUTH_DELAYED = 0x0E,   /* failed logins answered after the delay */
    MON_CMD_AUTH_REFUSED = 0x0F,   /* AUTH refused: too many failures */
    MON_CMD_CLIENT_LIMIT = 0x10,   /* refused: --client-limit */
    MON_CMD_CLIENT_RATE  = 0x11,   /* refused: --client-rate */
    MON_CMD_MESSAGE_RATE = 0x12,   /* MAIL refused: --message-rate */
    MON_CMD_COUNT
};

enum mon_status {
    MON_OK              = 0,
    MON_BAD_VERSION     = 1,
    MON_AUTH_FAILED     = 2,
    MON_BAD_COMMAND     = 3,
    MON_BAD_LENGTH      = 4,
    MON_ERROR           = 5,
    MON_NOT_AVAILABLE   = 6,
};

#endif
