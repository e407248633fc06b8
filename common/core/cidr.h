/* IP addresses and CIDR ranges (IPv4 and IPv6).
 *
 * Addresses are held as 16 bytes; IPv4 addresses are stored IPv4-mapped
 * (::ffff:a.b.c.d) so that a v4 CIDR matches both a plain v4 peer and a
 * v4-mapped peer on a dual-stack socket. A bare address ("10.0.0.1",
 * "::1") is a /32 or /128.
 *
 * Thread safety: pure functions; a list is read-only after parsing. */
#ifndef SORA_CORE_CIDR_H
#define SORA_CORE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct sora_ip {
	uint8_t b[16];
};

struct sora_cidr {
	struct sora_ip net;  /* already masked */
	uint8_t bits;        /* 0..128, in the 128-bit (mapped) space */
};

struct sora_cidr_list {
	struct sora_cidr *items;  /* owned */
	size_t count;
};

int sora_ip_parse(const char *s, struct sora_ip *ip_r);
bool sora_ip_is_v4(const struct sora_ip *ip);
/* From a sockaddr_in / sockaddr_in6; -1 for other families (unix sockets). */
int sora_ip_from_sockaddr(const struct sockaddr *sa, struct sora_ip *ip_r);
/* "203.0.113.5" or "2001:db8::1" (mapped v4 printed as v4). */
const char *sora_ip_format(const struct sora_ip *ip, char *buf, size_t size);

/* "10.0.0.0/8", "2001:db8::/32", "127.0.0.1" (host). -1 + *error_r if bad. */
int sora_cidr_parse(const char *s, struct sora_cidr *cidr_r, const char **error_r);
bool sora_cidr_match(const struct sora_cidr *cidr, const struct sora_ip *ip);

/* Appends a parsed CIDR to the list (grows it). */
int sora_cidr_list_add(struct sora_cidr_list *list, const char *s, const char **error_r);
bool sora_cidr_list_match(const struct sora_cidr_list *list, const struct sora_ip *ip);
void sora_cidr_list_free(struct sora_cidr_list *list);

#endif
