/* IP addresses and CIDR ranges (see cidr.h). */
#include "common/core/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "common/core/str.h"

/* The longest text form we accept: a full IPv6 address with an embedded
 * IPv4 part (45 characters) plus "/128". */
#define CIDR_TEXT_MAX 64

static const uint8_t v4_mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

static void ip_set_v4(struct sora_ip *ip, const void *v4)
{
	memcpy(ip->b, v4_mapped_prefix, sizeof(v4_mapped_prefix));
	memcpy(ip->b + 12, v4, 4);
}

/* Like sora_ip_parse() but also tells whether the text was IPv4. */
static int ip_parse(const char *s, struct sora_ip *ip_r, bool *is_v4_r)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, s, &a4) == 1) {
		ip_set_v4(ip_r, &a4);
		*is_v4_r = true;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a6) == 1) {
		memcpy(ip_r->b, &a6, 16);
		*is_v4_r = false;
		return 0;
	}
	return -1;
}

int sora_ip_parse(const char *s, struct sora_ip *ip_r)
{
	bool is_v4;

	return ip_parse(s, ip_r, &is_v4);
}

bool sora_ip_is_v4(const struct sora_ip *ip)
{
	return memcmp(ip->b, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0;
}

int sora_ip_from_sockaddr(const struct sockaddr *sa, struct sora_ip *ip_r)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		ip_set_v4(ip_r, &sin->sin_addr);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		memcpy(ip_r->b, &sin6->sin6_addr, 16);
		return 0;
	}
	return -1;
}

const char *sora_ip_format(const struct sora_ip *ip, char *buf, size_t size)
{
	if (size == 0)
		return buf;
	if (sora_ip_is_v4(ip)) {
		if (inet_ntop(AF_INET, ip->b + 12, buf, (socklen_t)size) == NULL)
			buf[0] = '\0';
	} else {
		if (inet_ntop(AF_INET6, ip->b, buf, (socklen_t)size) == NULL)
			buf[0] = '\0';
	}
	return buf;
}

/* Clears every bit after the first `bits` bits. */
static void ip_mask(struct sora_ip *ip, unsigned bits)
{
	for (unsigned i = 0; i < 16; i++) {
		if (bits >= 8) {
			bits -= 8;
		} else {
			ip->b[i] &= (uint8_t)(0xff00u >> bits);
			bits = 0;
		}
	}
}

int sora_cidr_parse(const char *s, struct sora_cidr *cidr_r, const char **error_r)
{
	char addr[CIDR_TEXT_MAX + 1];
	const char *slash;
	size_t addr_len;
	uint64_t prefix;
	unsigned max_prefix;
	bool is_v4;

	if (s == NULL || *s == '\0') {
		*error_r = "empty network address";
		return -1;
	}
	slash = strchr(s, '/');
	addr_len = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (addr_len > CIDR_TEXT_MAX) {
		*error_r = "network address too long";
		return -1;
	}
	memcpy(addr, s, addr_len);
	addr[addr_len] = '\0';
	if (ip_parse(addr, &cidr_r->net, &is_v4) < 0) {
		*error_r = "invalid IP address (expected e.g. \"10.0.0.0/8\" or \"2001:db8::/32\")";
		return -1;
	}

	max_prefix = is_v4 ? 32 : 128;
	if (slash == NULL) {
		prefix = max_prefix;
	} else if (sora_str_to_u64(sora_str_c(slash + 1), max_prefix, &prefix) < 0) {
		*error_r = is_v4 ? "invalid prefix length (0-32 for IPv4)" :
			"invalid prefix length (0-128 for IPv6)";
		return -1;
	}
	/* An IPv4 prefix counts from bit 96 of the mapped address. */
	cidr_r->bits = (uint8_t)(is_v4 ? 96 + prefix : prefix);
	/* Host bits are dropped ("10.1.2.3/8" is 10.0.0.0/8), as Go's
	 * net.ParseCIDR does, so configs written for Sora keep working. */
	ip_mask(&cidr_r->net, cidr_r->bits);
	return 0;
}

bool sora_cidr_match(const struct sora_cidr *cidr, const struct sora_ip *ip)
{
	unsigned full = cidr->bits / 8, rest = cidr->bits % 8;

	if (memcmp(cidr->net.b, ip->b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((cidr->net.b[full] ^ ip->b[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}

int sora_cidr_list_add(struct sora_cidr_list *list, const char *s, const char **error_r)
{
	struct sora_cidr cidr, *items;

	if (sora_cidr_parse(s, &cidr, error_r) < 0)
		return -1;
	items = reallocarray(list->items, list->count + 1, sizeof(*items));
	if (items == NULL) {
		*error_r = "out of memory";
		return -1;
	}
	items[list->count++] = cidr;
	list->items = items;
	return 0;
}

bool sora_cidr_list_match(const struct sora_cidr_list *list, const struct sora_ip *ip)
{
	for (size_t i = 0; i < list->count; i++) {
		if (sora_cidr_match(&list->items[i], ip))
			return true;
	}
	return false;
}

void sora_cidr_list_free(struct sora_cidr_list *list)
{
	free(list->items);
	list->items = NULL;
	list->count = 0;
}
