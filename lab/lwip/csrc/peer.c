/*
 * peer.c: the tcpshake lab's second TCP stack. It runs lwIP (Debian's liblwip, the library's own TCP, raw API)
 * on a TAP device inside the lab's server namespace and serves the lab's ports with lwIP's TCP:
 *
 *   7 echo, 9 hold (CLOSE-WAIT for a while after the peer's FIN), 13 half (sends a line, half-closes first),
 *   80 http (answers one request, closes first), 85 v4only (echo bound to IPv4 only); any other port has no
 *   listener, so lwIP answers a SYN with RST itself (81 closed).
 *
 * Usage: peer --netns PATH --tap IF --v4 A.B.C.D/LEN [--v6 ADDR] [--hold-ms N] [--idle-ms N]
 *
 * It prints "lwip peer ready" on stdout once the interface is up and every listener is open, then runs until
 * SIGTERM or SIGINT. Its TCP state, as `ss -tan` shows the kernel's, is read from the abstract UNIX socket
 * "@tcpshake-lwip-state" of the server namespace: one line per pcb, "STATE LOCAL REMOTE" (lwIP's state names,
 * listeners with remote "*"), then the connection closes. Built by tcpshake lab up --peer lwip with the system's cc; it is not part of the Go build.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lwip/init.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/tcp.h"
#include "lwip/tcpip.h"
#include "lwip/timeouts.h"
#include "lwip/etharp.h"
#include "netif/ethernet.h"
#if LWIP_IPV6
#include "lwip/ethip6.h"
#include "lwip/ip6_addr.h"
#endif

#include "lwip/priv/tcp_priv.h"

#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>

enum service { ECHO, HOLD, HALF, HTTP };

#define MAX_CONNS 1024
#define HTTP_MAX_REQUEST 4096
#define HTTP_READ_MS 2000
#define POLL_MS 500 /* tcp_poll's interval unit: two TCP_SLOW_INTERVAL ticks */

static const char half_banner[] = "tcpshake lab: half-close demo\r\n";
static const char http_body[] = "hello from the tcpshake lab\n";

/* conn is the state of one accepted connection; it lives until lwIP frees the pcb (close, abort, reset). */
struct conn {
	enum service svc;
	struct tcp_pcb *pcb;
	struct pbuf *pending; /* echo: received data not yet written back */
	int idle_ms;          /* time since the last received segment */
	int fin;              /* the peer's FIN was received */
	int closing;          /* tcp_close was called (or the hold timer is armed) */
	size_t req_len;       /* http: bytes of the request head read so far */
	char req[HTTP_MAX_REQUEST];
	int answered; /* http: the answer was queued */
};

/* server is the program's whole state, filled in by main and used from lwIP's tcpip thread only. */
struct server {
	struct netif netif;
	int tap_fd;
	const char *tap;
	ip4_addr_t v4, mask;
	int have_v6;
	ip6_addr_t v6;
	int hold_ms, idle_ms;
	int conns;
	sys_sem_t ready;
	int failed;
};

static void conn_free(struct server *s, struct conn *c)
{
	if (c->pending)
		pbuf_free(c->pending);
	free(c);
	s->conns--;
}

/* conn_close closes c's pcb (lwIP sends FIN after queued data); on failure (no memory) it aborts. */
static err_t conn_close(struct server *s, struct conn *c)
{
	struct tcp_pcb *pcb = c->pcb;
	tcp_arg(pcb, NULL);
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_poll(pcb, NULL, 0);
	tcp_err(pcb, NULL);
	conn_free(s, c);
	if (tcp_close(pcb) != ERR_OK) {
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	return ERR_OK;
}

static struct server *the_server(void);

/* echo_flush writes as much of c->pending as the send buffer takes and opens the receive window by as much. */
static err_t echo_flush(struct server *s, struct conn *c)
{
	while (c->pending) {
		struct pbuf *p = c->pending;
		u16_t room = tcp_sndbuf(c->pcb);
		u16_t n = p->len < room ? p->len : room;
		if (n == 0)
			break;
		err_t err = tcp_write(c->pcb, p->payload, n, TCP_WRITE_FLAG_COPY);
		if (err == ERR_MEM)
			break;
		if (err != ERR_OK)
			return err;
		tcp_recved(c->pcb, n);
		if (n < p->len) {
			pbuf_remove_header(p, n);
			break;
		}
		c->pending = p->next;
		if (c->pending)
			pbuf_ref(c->pending);
		pbuf_free(p);
	}
	tcp_output(c->pcb);
	if (!c->pending && c->fin)
		return conn_close(s, c);
	return ERR_OK;
}

static void hold_expired(void *arg)
{
	struct conn *c = arg;
	struct server *s = the_server();
	if (c->pcb == NULL) { /* reset or aborted while held: only the state is left */
		conn_free(s, c);
		return;
	}
	conn_close(s, c);
}

static err_t http_answer(struct server *s, struct conn *c)
{
	char resp[512];
	int n = snprintf(resp, sizeof resp,
	                 "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
	                 strlen(http_body), http_body);
	c->answered = 1;
	if (tcp_write(c->pcb, resp, (u16_t)n, TCP_WRITE_FLAG_COPY) != ERR_OK) {
		tcp_abort(c->pcb);
		conn_free(s, c);
		return ERR_ABRT;
	}
	return conn_close(s, c);
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct conn *c = arg;
	struct server *s = the_server();
	(void)pcb;
	if (c == NULL) {
		if (p) {
			tcp_recved(pcb, p->tot_len);
			pbuf_free(p);
		}
		return ERR_OK;
	}
	if (err != ERR_OK && p) {
		pbuf_free(p);
		return err;
	}
	c->idle_ms = 0;
	if (p == NULL) { /* the peer's FIN */
		c->fin = 1;
		switch (c->svc) {
		case ECHO:
			return echo_flush(s, c);
		case HOLD:
			c->closing = 1;
			tcp_recv(c->pcb, NULL);
			tcp_poll(c->pcb, NULL, 0);
			sys_timeout(s->hold_ms, hold_expired, c);
			return ERR_OK;
		case HALF:
			return conn_close(s, c);
		case HTTP:
			if (!c->answered)
				return http_answer(s, c);
			return conn_close(s, c);
		}
		return ERR_OK;
	}
	switch (c->svc) {
	case ECHO:
		if (c->pending)
			pbuf_cat(c->pending, p);
		else
			c->pending = p;
		return echo_flush(s, c);
	case HTTP:
		if (!c->answered) {
			u16_t room = (u16_t)(sizeof c->req - c->req_len);
			u16_t n = pbuf_copy_partial(p, c->req + c->req_len, room, 0);
			c->req_len += n;
			tcp_recved(pcb, p->tot_len);
			pbuf_free(p);
			if (c->req_len >= sizeof c->req || memmem(c->req, c->req_len, "\r\n\r\n", 4))
				return http_answer(s, c);
			return ERR_OK;
		}
		/* after the answer: discard */
		__attribute__((fallthrough));
	case HOLD:
	case HALF:
		tcp_recved(pcb, p->tot_len);
		pbuf_free(p);
		return ERR_OK;
	}
	return ERR_OK;
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct conn *c = arg;
	(void)pcb;
	(void)len;
	if (c && c->svc == ECHO && c->pending)
		return echo_flush(the_server(), c);
	return ERR_OK;
}

static err_t on_poll(void *arg, struct tcp_pcb *pcb)
{
	struct conn *c = arg;
	struct server *s = the_server();
	(void)pcb;
	if (c == NULL || c->closing)
		return ERR_OK;
	c->idle_ms += POLL_MS;
	if (c->svc == HTTP && !c->answered && c->idle_ms >= HTTP_READ_MS)
		return http_answer(s, c);
	if (c->idle_ms >= s->idle_ms)
		return conn_close(s, c);
	if (c->svc == ECHO && c->pending)
		return echo_flush(s, c);
	return ERR_OK;
}

static void on_err(void *arg, err_t err)
{
	struct conn *c = arg;
	(void)err;
	if (c == NULL)
		return;
	if (c->closing && c->svc == HOLD) { /* the hold timer still points at c: it frees it */
		c->pcb = NULL;
		return;
	}
	conn_free(the_server(), c);
}

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	struct server *s = the_server();
	if (err != ERR_OK || pcb == NULL)
		return ERR_VAL;
	if (s->conns >= MAX_CONNS) {
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL) {
		tcp_abort(pcb);
		return ERR_ABRT;
	}
	s->conns++;
	c->svc = (enum service)(intptr_t)arg;
	c->pcb = pcb;
	tcp_arg(pcb, c);
	tcp_recv(pcb, on_recv);
	tcp_sent(pcb, on_sent);
	tcp_err(pcb, on_err);
	tcp_poll(pcb, on_poll, 1);
	if (c->svc == HALF) {
		if (tcp_write(pcb, half_banner, sizeof half_banner - 1, 0) != ERR_OK ||
		    tcp_shutdown(pcb, 0, 1) != ERR_OK) {
			tcp_abort(pcb);
			conn_free(s, c);
			return ERR_ABRT;
		}
	}
	return ERR_OK;
}

static int listen_on(u8_t type, u16_t port, enum service svc)
{
	struct tcp_pcb *pcb = tcp_new_ip_type(type);
	if (pcb == NULL)
		return -1;
	const ip_addr_t *any = type == IPADDR_TYPE_V4 ? IP4_ADDR_ANY : IP_ANY_TYPE;
	if (tcp_bind(pcb, any, port) != ERR_OK) {
		tcp_close(pcb);
		return -1;
	}
	struct tcp_pcb *l = tcp_listen_with_backlog(pcb, 128);
	if (l == NULL) {
		tcp_close(pcb);
		return -1;
	}
	tcp_arg(l, (void *)(intptr_t)svc);
	tcp_accept(l, on_accept);
	return 0;
}


/*
 * The TAP driver. The library's own (netif/tapif.c of lwIP's unix port, tapif_init) is not used: in Debian's
 * liblwip0 2.1.3+dfsg1-2 its receive path overflows the heap on any frame longer than about 600 bytes (pbuf_take
 * into a PBUF_POOL pbuf allocated smaller than PBUF_POOL_BUFSIZE says; AddressSanitizer shows a 1514-byte write
 * into a 616-byte block). This one receives into PBUF_RAM pbufs of the frame's exact size.
 */
#define FRAME_MAX 1518

static err_t tap_linkoutput(struct netif *netif, struct pbuf *p)
{
	struct server *s = netif->state;
	char buf[FRAME_MAX];
	if (p->tot_len > sizeof buf)
		return ERR_BUF;
	u16_t n = pbuf_copy_partial(p, buf, p->tot_len, 0);
	if (write(s->tap_fd, buf, n) != (ssize_t)n)
		return ERR_IF;
	return ERR_OK;
}

/* tap_reader runs in its own thread: each frame read from the TAP goes to lwIP's tcpip thread (tcpip_input). */
static void *tap_reader(void *arg)
{
	struct server *s = arg;
	char buf[FRAME_MAX + 64];
	for (;;) {
		ssize_t n = read(s->tap_fd, buf, sizeof buf);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("lwip peer: read tap");
			exit(1);
		}
		if (n == 0 || n > FRAME_MAX)
			continue;
		struct pbuf *p = pbuf_alloc(PBUF_RAW, (u16_t)n, PBUF_RAM);
		if (p == NULL)
			continue;
		pbuf_take(p, buf, (u16_t)n);
		if (s->netif.input(p, &s->netif) != ERR_OK)
			pbuf_free(p);
	}
	return NULL;
}

static err_t tap_init(struct netif *netif)
{
	struct server *s = netif->state;
	netif->name[0] = 't';
	netif->name[1] = 'p';
	netif->output = etharp_output;
#if LWIP_IPV6
	netif->output_ip6 = ethip6_output;
#endif
	netif->linkoutput = tap_linkoutput;
	netif->mtu = 1500;
	netif->hwaddr_len = 6;
	/* A locally administered unicast MAC: 02:74:73 ("ts") 00:00:02. */
	static const u8_t mac[6] = {0x02, 0x74, 0x73, 0x00, 0x00, 0x02};
	memcpy(netif->hwaddr, mac, sizeof mac);
	netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_IGMP | NETIF_FLAG_MLD6;
	(void)s;
	return ERR_OK;
}

/* tap_open attaches to the existing TAP device name (created by the lab, persistent, without packet info). */
static int tap_open(const char *name)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (ioctl(fd, TUNSETIFF, &ifr) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* state_dump is one reading of lwIP's pcb lists, made in the tcpip thread (the lists are that thread's). */
struct state_dump {
	char buf[256 * 1024];
	size_t len;
	sys_sem_t done;
};

static void addr_port(char *out, size_t n, const ip_addr_t *a, u16_t port)
{
	char ip[IPADDR_STRLEN_MAX];
	if (IP_IS_ANY_TYPE_VAL(*a)) {
		snprintf(out, n, "*:%u", port); /* a dual-stack listener */
		return;
	}
	ipaddr_ntoa_r(a, ip, sizeof ip);
	if (IP_IS_V6(a))
		snprintf(out, n, "[%s]:%u", ip, port);
	else
		snprintf(out, n, "%s:%u", ip, port);
}

static void dump_pcb(struct state_dump *d, const char *state, const ip_addr_t *la, u16_t lp, const ip_addr_t *ra, u16_t rp, int listener)
{
	char l[IPADDR_STRLEN_MAX + 10], r[IPADDR_STRLEN_MAX + 10];
	addr_port(l, sizeof l, la, lp);
	if (listener)
		snprintf(r, sizeof r, "*");
	else
		addr_port(r, sizeof r, ra, rp);
	if (d->len < sizeof d->buf) {
		int w = snprintf(d->buf + d->len, sizeof d->buf - d->len, "%s %s %s\n", state, l, r);
		if (w > 0)
			d->len += (size_t)w < sizeof d->buf - d->len ? (size_t)w : sizeof d->buf - d->len;
	}
}

static void dump_state(void *arg)
{
	struct state_dump *d = arg;
	for (struct tcp_pcb_listen *p = tcp_listen_pcbs.listen_pcbs; p != NULL; p = p->next)
		dump_pcb(d, "LISTEN", &p->local_ip, p->local_port, NULL, 0, 1);
	for (struct tcp_pcb *p = tcp_active_pcbs; p != NULL; p = p->next)
		dump_pcb(d, tcp_debug_state_str(p->state), &p->local_ip, p->local_port, &p->remote_ip, p->remote_port, 0);
	for (struct tcp_pcb *p = tcp_tw_pcbs; p != NULL; p = p->next)
		dump_pcb(d, tcp_debug_state_str(p->state), &p->local_ip, p->local_port, &p->remote_ip, p->remote_port, 0);
	sys_sem_signal(&d->done);
}

/* state_server answers every connection to the abstract socket with one dump of the pcbs. */
static void *state_server(void *arg)
{
	int lfd = *(int *)arg;
	static struct state_dump d;
	if (sys_sem_new(&d.done, 0) != ERR_OK)
		return NULL;
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		d.len = 0;
		if (tcpip_callback(dump_state, &d) == ERR_OK) {
			sys_arch_sem_wait(&d.done, 0);
			for (size_t off = 0; off < d.len;) {
				ssize_t w = write(c, d.buf + off, d.len - off);
				if (w <= 0)
					break;
				off += (size_t)w;
			}
		}
		close(c);
	}
}

/* state_listen opens the abstract UNIX socket "@tcpshake-lwip-state" in the current network namespace. */
static int state_listen(void)
{
	static const char name[] = "tcpshake-lwip-state";
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path + 1, name, sizeof name - 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	socklen_t n = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + sizeof name - 1);
	if (bind(fd, (struct sockaddr *)&sa, n) != 0 || listen(fd, 16) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* server_ptr is set once in main before lwIP starts and read only afterwards. */
static struct server *server_ptr;

static struct server *the_server(void) { return server_ptr; }

/* setup runs in lwIP's tcpip thread: the interface, its addresses, the listeners. */
static void setup(void *arg)
{
	struct server *s = arg;
	ip4_addr_t gw;
	ip4_addr_set_zero(&gw);
	if (netif_add(&s->netif, &s->v4, &s->mask, &gw, s, tap_init, tcpip_input) == NULL) {
		fprintf(stderr, "lwip peer: netif_add failed\n");
		s->failed = 1;
		sys_sem_signal(&s->ready);
		return;
	}
	netif_set_default(&s->netif);
	netif_set_up(&s->netif);
	netif_set_link_up(&s->netif);
#if LWIP_IPV6
	if (s->have_v6) {
		s8_t idx;
		netif_create_ip6_linklocal_address(&s->netif, 1);
		netif_ip6_addr_set_state(&s->netif, 0, IP6_ADDR_PREFERRED);
		if (netif_add_ip6_address(&s->netif, &s->v6, &idx) != ERR_OK) {
			fprintf(stderr, "lwip peer: netif_add_ip6_address failed\n");
			s->failed = 1;
			sys_sem_signal(&s->ready);
			return;
		}
		/* The lab's addresses skip duplicate address detection, as the Linux server's do (IFA_F_NODAD). */
		netif_ip6_addr_set_state(&s->netif, idx, IP6_ADDR_PREFERRED);
	}
#endif
	static const struct {
		u16_t port;
		enum service svc;
		u8_t type;
	} ls[] = {
	    {7, ECHO, IPADDR_TYPE_ANY},  {9, HOLD, IPADDR_TYPE_ANY}, {13, HALF, IPADDR_TYPE_ANY},
	    {80, HTTP, IPADDR_TYPE_ANY}, {85, ECHO, IPADDR_TYPE_V4},
	};
	for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++) {
		u8_t type = ls[i].type;
		if (!s->have_v6)
			type = IPADDR_TYPE_V4;
		if (listen_on(type, ls[i].port, ls[i].svc) != 0) {
			fprintf(stderr, "lwip peer: listen on port %u failed\n", ls[i].port);
			s->failed = 1;
			break;
		}
	}
	sys_sem_signal(&s->ready);
}

static int parse_v4(const char *arg, ip4_addr_t *a, ip4_addr_t *mask)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%s", arg);
	char *slash = strchr(buf, '/');
	if (slash == NULL)
		return -1;
	*slash = 0;
	int bits = atoi(slash + 1);
	if (bits < 1 || bits > 32 || !ip4addr_aton(buf, a))
		return -1;
	u32_t m = bits == 32 ? 0xffffffffu : ~(0xffffffffu >> bits);
	ip4_addr_set_u32(mask, lwip_htonl(m));
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: peer --netns PATH --tap IF --v4 A.B.C.D/LEN [--v6 ADDR] [--hold-ms N] [--idle-ms N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static struct server s;
	const char *netns = NULL, *tap = NULL, *v4 = NULL, *v6 = NULL;
	s.hold_ms = 3000;
	s.idle_ms = 60000;
	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--netns"))
			netns = argv[++i];
		else if (!strcmp(argv[i], "--tap"))
			tap = argv[++i];
		else if (!strcmp(argv[i], "--v4"))
			v4 = argv[++i];
		else if (!strcmp(argv[i], "--v6"))
			v6 = argv[++i];
		else if (!strcmp(argv[i], "--hold-ms"))
			s.hold_ms = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--idle-ms"))
			s.idle_ms = atoi(argv[++i]);
		else
			usage();
	}
	if (tap == NULL || v4 == NULL || parse_v4(v4, &s.v4, &s.mask) != 0 || s.hold_ms <= 0 || s.idle_ms <= 0)
		usage();
	if (v6) {
#if LWIP_IPV6
		if (!ip6addr_aton(v6, &s.v6)) {
			fprintf(stderr, "lwip peer: bad IPv6 address %s\n", v6);
			return 2;
		}
		s.have_v6 = 1;
#else
		fprintf(stderr, "lwip peer: this liblwip is built without IPv6 (LWIP_IPV6=0)\n");
		return 2;
#endif
	}
	if (netns) {
		int fd = open(netns, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
			fprintf(stderr, "lwip peer: enter network namespace %s: %s\n", netns, strerror(errno));
			return 1;
		}
		close(fd);
	}
	s.tap = tap;
	s.tap_fd = tap_open(tap);
	if (s.tap_fd < 0) {
		fprintf(stderr, "lwip peer: attach to TAP device %s: %s\n", tap, strerror(errno));
		return 1;
	}

	/* Every thread lwIP starts inherits this mask: only sigwait below takes the signals. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	server_ptr = &s;
	if (sys_sem_new(&s.ready, 0) != ERR_OK) {
		fprintf(stderr, "lwip peer: semaphore\n");
		return 1;
	}
	tcpip_init(NULL, NULL);
	tcpip_callback(setup, &s);
	sys_arch_sem_wait(&s.ready, 0);
	if (s.failed)
		return 1;
	pthread_t reader;
	if (pthread_create(&reader, NULL, tap_reader, &s) != 0) {
		fprintf(stderr, "lwip peer: start the TAP reader\n");
		return 1;
	}
	static int state_fd;
	state_fd = state_listen();
	pthread_t stater;
	if (state_fd < 0 || pthread_create(&stater, NULL, state_server, &state_fd) != 0) {
		fprintf(stderr, "lwip peer: open the state socket @tcpshake-lwip-state: %s\n", strerror(errno));
		return 1;
	}
	printf("lwip peer ready: lwIP %s on %s, %s%s%s\n", LWIP_VERSION_STRING, tap, v4, v6 ? " " : "", v6 ? v6 : "");
	fflush(stdout);
	int sig;
	sigwait(&sigs, &sig);
	printf("lwip peer: signal %d, exiting\n", sig);
	fflush(stdout);
	return 0;
}
