/* Routing decisions of a backend pool: ring owner, override, down
 * backends skipped (unless all are down), ring identity by host so that
 * pools of different protocols agree (affinity). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "common/config/config.h"
#include "proxy/backends.h"

static struct sora_server_config srv_imap, srv_pop3, srv_same_host;
static char *imap_addrs[] = { "10.0.0.1:143", "10.0.0.2:143", "10.0.0.3:143", NULL };
static char *pop3_addrs[] = { "10.0.0.3:110", "10.0.0.1:110", "10.0.0.2:110", NULL };
static char *same_host[] = { "127.0.0.1:1143", "127.0.0.1:2143", NULL };

static void init(struct sora_server_config *s, const char *name, enum sora_server_type t,
		 char **addrs, size_t n)
{
	memset(s, 0, sizeof(*s));
	s->name = (char *)name;
	s->type = t;
	s->remote_addrs = addrs;
	s->remote_addrs_count = n;
	s->connect_timeout_ms = 1000;
	s->health_check_interval_ms = 1000;
}

static struct proxy_pool *pool_of(struct sora_server_config *s)
{
	struct proxy_pool *p = NULL;
	char err[256];

	assert_int_equal(proxy_pool_create(s, &p, err, sizeof(err)), 0);
	return p;
}

static void test_affinity_across_protocols(void **state)
{
	struct proxy_pool *imap, *pop3;
	size_t oi[4], op[4];
	enum proxy_route_reason r;

	init(&srv_imap, "imap", SORA_SRV_IMAP_PROXY, imap_addrs, 3);
	init(&srv_pop3, "pop3", SORA_SRV_POP3_PROXY, pop3_addrs, 3);
	imap = pool_of(&srv_imap);
	pop3 = pool_of(&srv_pop3);
	assert_string_equal(imap->b[0].id, "10.0.0.1");
	for (int64_t id = 1; id < 500; id++) {
		size_t ni = proxy_pool_route(imap, id, NULL, oi, 4, &r);
		size_t np = proxy_pool_route(pop3, id, NULL, op, 4, &r);

		assert_int_equal(ni, 3);
		assert_int_equal(np, 3);
		assert_int_equal(r, PROXY_ROUTE_RING);
		for (size_t k = 0; k < 3; k++)
			assert_string_equal(imap->b[oi[k]].host, pop3->b[op[k]].host);
	}
	proxy_pool_free(&imap);
	proxy_pool_free(&pop3);
	assert_null(imap);
}

static void test_down_skipped_and_override(void **state)
{
	struct proxy_pool *p;
	size_t o[4], o2[4], n;
	enum proxy_route_reason r;

	init(&srv_imap, "imap", SORA_SRV_IMAP_PROXY, imap_addrs, 3);
	p = pool_of(&srv_imap);
	n = proxy_pool_route(p, 42, NULL, o, 4, &r);
	assert_int_equal(n, 3);
	/* Three failures mark the owner down; routing moves to the next. */
	for (int i = 0; i < PROXY_FAILS_DOWN; i++)
		proxy_backend_failed(p, o[0], "test");
	assert_true(atomic_load(&p->b[o[0]].down));
	n = proxy_pool_route(p, 42, NULL, o2, 4, &r);
	assert_int_equal(n, 2);
	assert_int_equal(r, PROXY_ROUTE_FAILOVER);
	assert_int_equal(o2[0], o[1]);
	assert_int_equal(o2[1], o[2]);
	/* An override names a backend by host; a down one is skipped. */
	n = proxy_pool_route(p, 42, p->b[o[2]].host, o2, 4, &r);
	assert_int_equal(r, PROXY_ROUTE_OVERRIDE);
	assert_int_equal(o2[0], o[2]);
	assert_int_equal(n, 2);
	n = proxy_pool_route(p, 42, p->b[o[0]].addr, o2, 4, &r);
	assert_int_not_equal(r, PROXY_ROUTE_OVERRIDE);
	/* All down: try them all in ring order anyway. */
	for (size_t i = 0; i < 3; i++)
		for (int k = 0; k < PROXY_FAILS_DOWN; k++)
			proxy_backend_failed(p, i, "test");
	n = proxy_pool_route(p, 42, NULL, o2, 4, &r);
	assert_int_equal(n, 3);
	assert_memory_equal(o2, o, sizeof(size_t) * 3);
	/* A good login brings one back. */
	proxy_backend_ok(p, o[0]);
	n = proxy_pool_route(p, 42, NULL, o2, 4, &r);
	assert_int_equal(n, 1);
	assert_int_equal(o2[0], o[0]);
	proxy_pool_free(&p);
}

static void test_same_host_ids(void **state)
{
	struct proxy_pool *p;
	struct sora_server_config bad;
	char *dup[] = { "10.0.0.1:143", "10.0.0.1:143", NULL };
	char err[256];

	init(&srv_same_host, "dev", SORA_SRV_IMAP_PROXY, same_host, 2);
	p = pool_of(&srv_same_host);
	assert_string_equal(p->b[0].id, "127.0.0.1:1143");
	assert_string_equal(p->b[1].id, "127.0.0.1:2143");
	proxy_pool_free(&p);
	init(&bad, "bad", SORA_SRV_IMAP_PROXY, dup, 2);
	assert_int_equal(proxy_pool_create(&bad, &p, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "listed twice"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_affinity_across_protocols),
		cmocka_unit_test(test_down_skipped_and_override),
		cmocka_unit_test(test_same_host_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
