/* Trace header lines of delivered mail: see lmtp.h. */
#include "backend/lmtp/lmtp.h"

#include <stdio.h>
#include <string.h>

/* Appends s with control characters (and DEL) replaced by '?', and bytes
 * >= 0x80 too unless utf8 is set (their validity as UTF-8 was checked by the
 * command parser). */
static int put_text(struct sora_buf *out, struct sora_str s, bool utf8)
{
	size_t start = 0;

	for (size_t i = 0; i < s.len; i++) {
		unsigned char c = (unsigned char)s.p[i];

		if (c >= 0x20 && c != 0x7f && (c < 0x80 || utf8))
			continue;
		if (sora_buf_append(out, s.p + start, i - start) < 0 ||
		    sora_buf_append(out, "?", 1) < 0)
			return -1;
		start = i + 1;
	}
	return sora_buf_append(out, s.p + start, s.len - start);
}

int sora_lmtp_trace_headers(const struct sora_lmtp_trace *t, struct sora_buf *out)
{
	static const char *const wday[7] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char *const mon[12] = {
		"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
	};
	const char *with;
	size_t old = out->len;
	bool u8 = t->smtputf8;
	struct tm tm;
	char date[64];

	/* RFC 6531 3.7.3 and RFC 3848: the IANA "with" types. */
	if (t->smtputf8)
		with = t->tls ? "UTF8LMTPS" : "UTF8LMTP";
	else
		with = t->tls ? "LMTPS" : "LMTP";
	gmtime_r(&t->when, &tm);
	snprintf(date, sizeof(date), "%s, %02d %s %04d %02d:%02d:%02d +0000", wday[tm.tm_wday % 7],
		 tm.tm_mday, mon[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
		 tm.tm_sec);
	if (sora_buf_append_str(out, "Return-Path: <") < 0 || put_text(out, t->sender, u8) < 0 ||
	    sora_buf_append_str(out, ">\r\nDelivered-To: ") < 0 || put_text(out, t->rcpt, u8) < 0 ||
	    sora_buf_append_str(out, "\r\nReceived: from ") < 0 ||
	    put_text(out, t->helo.len > 0 ? t->helo : SORA_STR("unknown"), u8) < 0 ||
	    sora_buf_printf(out, " (%s)\r\n\tby %s (Sora) with %s id %s\r\n\tfor <",
			    t->client_addr != NULL ? t->client_addr : "unix socket", t->hostname,
			    with, t->session_id) < 0 ||
	    put_text(out, t->rcpt, u8) < 0 || sora_buf_printf(out, ">; %s\r\n", date) < 0) {
		out->len = old;
		return -1;
	}
	return 0;
}
