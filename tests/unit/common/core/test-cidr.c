/* Tests for IP addresses and CIDR ranges (common/core/cidr.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include "common/core/cidr.h"

static struct sora_ip ip(const char *s)
{
	struct sora_ip a;

	if (sora_ip_parse(s, &a) < 0)
		fail_msg("address \"%s\" rejected", s);
	return a;
}

static struct sora_cidr cidr(const char *s)
{
	struct sora_cidr c;
	const char *error = NULL;

	if (sora_cidr_parse(s, &c, &error) < 0)
		fail_msg("\"%s\" rejected: %s", s, error);
	return c;
}

static void cidr_bad(const char *s, const char *why)
{
	struct sora_cidr c;
	const char *error = NULL;

	if (sora_cidr_parse(s, &c, &error) == 0)
		fail_msg("\"%s\" accepted", s);
	assert_non_null(error);
	if (strstr(error, why) == NULL)
		fail_msg("\"%s\": error \"%s\" lacks \"%s\"", s, error, why);
}

static bool match(const char *net, const char *addr)
{
	struct sora_cidr c = cidr(net);
	struct sora_ip a = ip(addr);

	return sora_cidr_match(&c, &a);
}

static void test_ip_parse_and_format(void **state)
{
	char buf[64];
	struct sora_ip a;

	a = ip("203.0.113.5");
	assert_true(sora_ip_is_v4(&a));
	assert_string_equal(sora_ip_format(&a, buf, sizeof(buf)), "203.0.113.5");

	a = ip("2001:db8::1");
	assert_false(sora_ip_is_v4(&a));
	assert_string_equal(sora_ip_format(&a, buf, sizeof(buf)), "2001:db8::1");

	/* A v4-mapped v6 address is the same address as the plain v4 one. */
	a = ip("::ffff:192.0.2.1");
	assert_true(sora_ip_is_v4(&a));
	assert_string_equal(sora_ip_format(&a, buf, sizeof(buf)), "192.0.2.1");
	assert_memory_equal(a.b, ip("192.0.2.1").b, 16);

	assert_int_equal(sora_ip_parse("", &a), -1);
	assert_int_equal(sora_ip_parse("1.2.3", &a), -1);
	assert_int_equal(sora_ip_parse("1.2.3.256", &a), -1);
	assert_int_equal(sora_ip_parse("01.2.3.4", &a), -1);
	assert_int_equal(sora_ip_parse("::1::2", &a), -1);
	assert_int_equal(sora_ip_parse("fe80::1%eth0", &a), -1);
	assert_int_equal(sora_ip_parse("example.com", &a), -1);
}

static void test_ip_from_sockaddr(void **state)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct sora_ip a;
	char buf[64];

	inet_pton(AF_INET, "198.51.100.7", &sin.sin_addr);
	assert_int_equal(sora_ip_from_sockaddr((struct sockaddr *)&sin, &a), 0);
	assert_string_equal(sora_ip_format(&a, buf, sizeof(buf)), "198.51.100.7");
	assert_true(match("198.51.100.0/24", "198.51.100.7"));

	inet_pton(AF_INET6, "::ffff:198.51.100.7", &sin6.sin6_addr);
	assert_int_equal(sora_ip_from_sockaddr((struct sockaddr *)&sin6, &a), 0);
	assert_true(sora_ip_is_v4(&a));
	assert_string_equal(sora_ip_format(&a, buf, sizeof(buf)), "198.51.100.7");

	assert_int_equal(sora_ip_from_sockaddr((struct sockaddr *)&sun, &a), -1);
}

static void test_v4(void **state)
{
	assert_true(match("10.0.0.0/8", "10.1.2.3"));
	assert_true(match("10.0.0.0/8", "10.255.255.255"));
	assert_false(match("10.0.0.0/8", "11.0.0.0"));
	assert_false(match("10.0.0.0/8", "9.255.255.255"));
	assert_true(match("192.168.1.128/25", "192.168.1.200"));
	assert_false(match("192.168.1.128/25", "192.168.1.127"));
	assert_true(match("172.16.0.0/12", "172.31.255.1"));
	assert_false(match("172.16.0.0/12", "172.32.0.1"));
	/* Host bits in the network are dropped, as Go's ParseCIDR does. */
	assert_true(match("10.1.2.3/8", "10.200.0.1"));
	assert_true(match("127.0.0.1/32", "127.0.0.1"));
	assert_false(match("127.0.0.1/32", "127.0.0.2"));
	/* A v4 network never matches a v6 peer. */
	assert_false(match("10.0.0.0/8", "2001:db8::1"));
}

static void test_v6(void **state)
{
	assert_true(match("2001:db8::/32", "2001:db8:ffff::1"));
	assert_false(match("2001:db8::/32", "2001:db9::1"));
	assert_true(match("2001:db8:abcd:12::/63", "2001:db8:abcd:13::5"));
	assert_false(match("2001:db8:abcd:12::/63", "2001:db8:abcd:14::5"));
	assert_true(match("::1/128", "::1"));
	assert_false(match("::1/128", "::2"));
	assert_false(match("2001:db8::/32", "10.0.0.1"));
}

static void test_v4_mapped(void **state)
{
	/* A dual-stack socket reports a v4 client as ::ffff:a.b.c.d; a v4
	 * CIDR must still match it. */
	assert_true(match("10.0.0.0/8", "::ffff:10.9.8.7"));
	assert_false(match("10.0.0.0/8", "::ffff:11.9.8.7"));
	assert_true(match("127.0.0.0/8", "::ffff:127.0.0.1"));
	/* And a mapped network written in v6 form matches plain v4 peers. */
	assert_true(match("::ffff:10.0.0.0/104", "10.1.1.1"));
	assert_false(match("::ffff:10.0.0.0/104", "11.1.1.1"));
}

static void test_zero_prefix_and_hosts(void **state)
{
	struct sora_cidr c;

	/* 0.0.0.0/0 is every v4 address, but no v6 one. */
	assert_true(match("0.0.0.0/0", "1.2.3.4"));
	assert_true(match("0.0.0.0/0", "::ffff:1.2.3.4"));
	assert_false(match("0.0.0.0/0", "2001:db8::1"));
	/* ::/0 is every address. */
	assert_true(match("::/0", "2001:db8::1"));
	assert_true(match("::/0", "1.2.3.4"));

	c = cidr("192.0.2.9");
	assert_int_equal(c.bits, 128);
	assert_true(match("192.0.2.9", "192.0.2.9"));
	assert_false(match("192.0.2.9", "192.0.2.10"));
	c = cidr("2001:db8::9");
	assert_int_equal(c.bits, 128);
	assert_false(match("2001:db8::9", "2001:db8::8"));
	c = cidr("10.0.0.0/8");
	assert_int_equal(c.bits, 104);
	c = cidr("1.2.3.4/0");
	assert_int_equal(c.bits, 96);
	assert_memory_equal(c.net.b, ip("0.0.0.0").b, 16);
}

static void test_bad(void **state)
{
	char longer[200];

	cidr_bad("10.0.0.0/33", "0-32");
	cidr_bad("10.0.0.0/99", "0-32");
	cidr_bad("2001:db8::/129", "0-128");
	cidr_bad("::/200", "0-128");
	cidr_bad("10.0.0.0/", "prefix");
	cidr_bad("10.0.0.0/-1", "prefix");
	cidr_bad("10.0.0.0/+8", "prefix");
	cidr_bad("10.0.0.0/8/8", "prefix");
	cidr_bad("10.0.0.0/ 8", "prefix");
	cidr_bad("10.0.0.0/8 ", "prefix");
	cidr_bad("10.0.0.0/18446744073709551624", "prefix");
	cidr_bad("", "empty");
	cidr_bad(NULL, "empty");
	cidr_bad("/8", "invalid IP");
	cidr_bad("10.0.0/8", "invalid IP");
	cidr_bad("garbage", "invalid IP");
	cidr_bad(" 10.0.0.0/8", "invalid IP");
	cidr_bad("10.0.0.0\n/8", "invalid IP");
	memset(longer, '1', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	cidr_bad(longer, "too long");
}

static void test_list(void **state)
{
	struct sora_cidr_list list = { NULL, 0 };
	const char *error = NULL;
	struct sora_ip a = ip("10.1.1.1"), b = ip("2001:db8::5"), c = ip("8.8.8.8");

	assert_false(sora_cidr_list_match(&list, &a));
	assert_int_equal(sora_cidr_list_add(&list, "10.0.0.0/8", &error), 0);
	assert_int_equal(sora_cidr_list_add(&list, "2001:db8::/32", &error), 0);
	/* A bad entry is refused and the list stays as it was. */
	assert_int_equal(sora_cidr_list_add(&list, "10.0.0.0/40", &error), -1);
	assert_non_null(error);
	assert_int_equal(list.count, 2);
	assert_true(sora_cidr_list_match(&list, &a));
	assert_true(sora_cidr_list_match(&list, &b));
	assert_false(sora_cidr_list_match(&list, &c));
	sora_cidr_list_free(&list);
	assert_null(list.items);
	assert_int_equal(list.count, 0);
	sora_cidr_list_free(&list);
}

static void test_every_prefix_length(void **state)
{
	/* For each length the network matches the last address inside it
	 * and not the first one outside it. */
	for (unsigned bits = 1; bits <= 32; bits++) {
		char net[32];
		uint32_t inside = bits == 32 ? 0x0a000000u : 0x0a000000u | ((1u << (32 - bits)) - 1);
		uint32_t outside = bits == 32 ? 0x0a000001u : 0x0a000000u + (1u << (32 - bits));
		struct in_addr in = { htonl(inside) }, out = { htonl(outside) };
		char in_s[32], out_s[32];

		snprintf(net, sizeof(net), "10.0.0.0/%u", bits);
		inet_ntop(AF_INET, &in, in_s, sizeof(in_s));
		inet_ntop(AF_INET, &out, out_s, sizeof(out_s));
		if (!match(net, in_s))
			fail_msg("%s does not match %s", net, in_s);
		if (bits > 7 && match(net, out_s))
			fail_msg("%s matches %s", net, out_s);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ip_parse_and_format),
		cmocka_unit_test(test_ip_from_sockaddr),
		cmocka_unit_test(test_v4),
		cmocka_unit_test(test_v6),
		cmocka_unit_test(test_v4_mapped),
		cmocka_unit_test(test_zero_prefix_and_hosts),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_every_prefix_length),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
