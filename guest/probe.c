/*
 * hil probe guest: a bare-metal L2 workload whose VM exits are counted in L1.
 *
 * Command line (QEMU -append), whitespace-separated key=value tokens;
 * unknown tokens are ignored (multiboot prepends the kernel path):
 *   ops=cpuid:16,pio-kernel:8,pio-user:8,msr:8,hlt:4   ordered op:count list
 *   hlt_timer_us=1000                                  APIC timer per hlt (default 1000)
 *   exit=1                                             write status to port 0xf4 at the end
 *   race_timeout_us=20000  ipi-race: a kick not taken within this is counted late
 *   cli_window_us=5000     cli-window: how long each window holds IF=0
 *   dev_timeout_us=5000000 device ops: an interrupt (net-rx: a frame) not seen within this ends
 *                          the op with an error
 * Device ops (devices.c): dev-msi, dev-dma (QEMU's edu), net-rx, net-tx (virtio-net).
 *
 * Output on COM1 (one line each):
 *   hil-probe: event=start version=1 window=0x<start>-0x<end> boot=<pvh|multiboot>
 *   hil-probe: event=begin name=<op>        (kicks, ipi-race, dev-msi, dev-dma, net-tx: the op
 *                                            starts 200 ms later; net-rx: at once)
 *   hil-probe: event=op name=<op> count=<n> tsc=<cycles> [hlts= | irqs= | sent= late= lat_avg_ns= lat_max_ns=]
 *              cli-window: irqs= masked= at_sti= windows= masked_rip= tsc_khz=
 *              simple ops (cpuid .. hlt): tsc_khz= samples= (hlt: timer_us=), and their
 *              per-iteration TSC as event=samples kind=iter lines (the first 1024)
 *              device ops: irqs= tsc_khz= samples= and raised= | transfers= data_errors= |
 *              frames= in_order= first_seq= other= notifies= | frames= notifies=
 *   hil-probe: event=samples name=<op> kind=<lat|isr|sender> unit=<tsc|sender> first=<i> v=<a>,<b>,...
 *   hil-probe: event=error msg=<words-joined-with-dashes>
 *   hil-probe: event=done status=<ok|error> ops=<ops completed>
 * then cli; hlt forever.
 */
#include "probe.h"

#define PROBE_VERSION 1

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0xf4

#define MB1_BOOT_MAGIC 0x2BADB002u
#define MB1_INFO_CMDLINE (1u << 2)
#define PVH_START_MAGIC 0x336ec578u

#define MSR_APIC_BASE 0x1b
#define APIC_BASE_EN (1ull << 11)
#define APIC_BASE_EXTD (1ull << 10)
#define X2APIC_TPR 0x808
#define X2APIC_SVR 0x80f
#define X2APIC_LVT_TIMER 0x832
#define X2APIC_LVT_LINT0 0x835
#define X2APIC_LVT_LINT1 0x836
#define X2APIC_LVT_ERROR 0x837
#define X2APIC_TMICT 0x838
#define X2APIC_TMCCT 0x839
#define X2APIC_ICR 0x830
#define X2APIC_TDCR 0x83e
#define LVT_MASKED (1u << 16)
#define TDCR_DIV_1 0xb

#define TIMER_VECTOR 0x40
#define KICK_VECTOR 0x50 /* the kicks' MSIs and IPIs */
#define KICK_VECTOR_B 0x60 /* ipi-race: the second kick of each pair */
#define AP_TRAMPOLINE 0x8000 /* SIPI vector 0x08 */
#define ICR_INIT 0x4500ull
#define ICR_STARTUP (0x4600ull | (AP_TRAMPOLINE >> 12))
#define SPURIOUS_VECTOR 0xff

/* APIC timer ticks per microsecond with divide-by-1: both KVM (1 ns APIC bus
 * cycle) and QEMU's userspace/TCG APIC (ns of QEMU_CLOCK_VIRTUAL) count at
 * 1 GHz. */
#define APIC_TICKS_PER_US 1000u
#define HLT_TIMER_US_DEFAULT 1000u
#define HLT_TIMER_US_MIN 10u
#define HLT_TIMER_US_MAX 4000000u /* keeps TMICT within 32 bits */

#define MAX_OPS 64
#define MAX_COUNT 1000000000ull
#define CMDLINE_MAX 2048

extern char __window_start[], __window_end[];
extern char __image_start[], __image_end[];
extern void op_cpuid(uint64_t n);
extern void op_pio_kernel(uint64_t n);
extern void op_pio_user(uint64_t n);
extern void op_msr(uint64_t n);
extern void op_hlt(uint64_t n, uint64_t tmict);
extern void hlt_timer_isr(void);
extern volatile uint64_t hlt_timer_irqs;
extern volatile uint64_t hlt_executed;
extern void op_kicks(uint64_t n);
extern void op_ipi_race(uint64_t n);
extern void kick_isr(void);
extern void race_isr(void);
extern volatile uint64_t kick_irqs;
extern volatile uint64_t race_done;
extern volatile uint64_t race_eoi_cost, race_irqs_a, race_irqs_b, race_at_a, race_at_b;
extern void race_isr_b(void);
extern void op_cli_window(uint64_t n, uint64_t window_tsc, uint64_t idle_tsc);
extern void cli_window_isr(void);
extern volatile uint64_t cli_window_irqs, cli_window_masked_irqs, cli_window_at_sti, cli_window_windows;
extern volatile uint64_t cli_window_masked_rip;
extern const char ap_trampoline[], ap_trampoline_end[];
extern void probe_spurious_isr(void);
extern void probe_unexpected_irq(void);
extern const uint64_t probe_exc_stubs[32];
extern void probe_halt_forever(void) __attribute__((noreturn));

void probe_main(uint32_t magic, uint32_t info);
void probe_exception(uint64_t vec, uint64_t err, uint64_t rip) __attribute__((noreturn));
void probe_unexpected_interrupt(uint64_t rip) __attribute__((noreturn));
void ap_main(void) __attribute__((noreturn));

/* ---------------------------------------------------------------- libc bits */

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *dp = d;
	const unsigned char *sp = s;
	while (n--)
		*dp++ = *sp++;
	return d;
}

static size_t str_len(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

static bool str_eq_n(const char *a, size_t alen, const char *b)
{
	size_t blen = str_len(b);
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

/* ------------------------------------------------------------ serial (COM1) */

static void serial_init(void)
{
	outb(COM1 + 1, 0x00); /* no interrupts */
	outb(COM1 + 3, 0x80); /* DLAB */
	outb(COM1 + 0, 0x01); /* 115200 baud */
	outb(COM1 + 1, 0x00);
	outb(COM1 + 3, 0x03); /* 8N1 */
	outb(COM1 + 2, 0xc7); /* FIFO on, cleared */
	outb(COM1 + 4, 0x03); /* DTR | RTS, OUT2 off */
}

void put_char(char c)
{
	/* bounded poll: a missing UART must not hang the probe */
	for (unsigned i = 0; i < 1000000 && !(inb(COM1 + 5) & 0x20); i++)
		;
	outb(COM1, (uint8_t)c);
}

void put_str(const char *s)
{
	while (*s)
		put_char(*s++);
}

void put_dec(uint64_t v)
{
	char buf[21];
	int i = 0;
	do {
		buf[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		put_char(buf[--i]);
}

void put_hex(uint64_t v)
{
	char buf[16];
	int i = 0;
	do {
		buf[i++] = "0123456789abcdef"[v & 0xf];
		v >>= 4;
	} while (v);
	put_str("0x");
	while (i)
		put_char(buf[--i]);
}

/* ------------------------------------------------------------------ state */

enum op_kind {
	OP_CPUID, OP_PIO_KERNEL, OP_PIO_USER, OP_MSR, OP_HLT, OP_KICKS, OP_IPI_RACE, OP_CLI_WINDOW,
	OP_DEV_MSI, OP_DEV_DMA, OP_NET_RX, OP_NET_TX, OP_KINDS
};

static const char *const op_names[OP_KINDS] = {
	[OP_CPUID] = "cpuid",
	[OP_PIO_KERNEL] = "pio-kernel",
	[OP_PIO_USER] = "pio-user",
	[OP_MSR] = "msr",
	[OP_HLT] = "hlt",
	[OP_KICKS] = "kicks",
	[OP_IPI_RACE] = "ipi-race",
	[OP_CLI_WINDOW] = "cli-window",
	[OP_DEV_MSI] = "dev-msi",
	[OP_DEV_DMA] = "dev-dma",
	[OP_NET_RX] = "net-rx",
	[OP_NET_TX] = "net-tx",
};

struct op {
	enum op_kind kind;
	uint64_t count;
};

static struct op ops[MAX_OPS];
static unsigned n_ops;
static unsigned ops_done;
static uint32_t hlt_timer_us = HLT_TIMER_US_DEFAULT;
static bool exit_on_done;
static uint32_t race_timeout_us = 20000;
static uint32_t cli_window_us = 5000;
static uint32_t begin_wait_us = 200000;   /* after event=begin: the host's snapshot, then its MSIs */
uint32_t dev_timeout_us = 5000000;
static char cmdline[CMDLINE_MAX];

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type;
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
} __attribute__((packed));

static struct idt_gate idt[256] __attribute__((aligned(4096)));

/* ------------------------------------------------------------------ finish */

static void __attribute__((noreturn)) finish(bool ok)
{
	put_str("hil-probe: event=done status=");
	put_str(ok ? "ok" : "error");
	put_str(" ops=");
	put_dec(ops_done);
	put_char('\n');
	if (exit_on_done)
		outl(DEBUG_EXIT_PORT, ok ? 0 : 1); /* isa-debug-exit: QEMU exits (v << 1) | 1 */
	probe_halt_forever();
}

void fail(const char *msg)
{
	put_str("hil-probe: event=error msg=");
	put_str(msg);
	put_char('\n');
	finish(false);
}

void probe_exception(uint64_t vec, uint64_t err, uint64_t rip)
{
	put_str("hil-probe: event=error msg=exception-");
	put_dec(vec);
	put_str("-error-");
	put_hex(err);
	put_str("-at-");
	put_hex(rip);
	put_char('\n');
	finish(false);
}

void probe_unexpected_interrupt(uint64_t rip)
{
	put_str("hil-probe: event=error msg=unexpected-interrupt-at-");
	put_hex(rip);
	put_char('\n');
	finish(false);
}

/* --------------------------------------------------------------- cmdline */

static bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (len == 0 || len > 12)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* returns an error message, or NULL */
static const char *parse_ops(const char *s, size_t len)
{
	size_t i = 0;
	if (len == 0)
		return "empty-ops";
	while (i <= len) {
		size_t start = i, colon = 0;
		bool have_colon = false;
		while (i < len && s[i] != ',') {
			if (s[i] == ':' && !have_colon) {
				have_colon = true;
				colon = i;
			}
			i++;
		}
		if (!have_colon)
			return "op-without-count";
		if (n_ops == MAX_OPS)
			return "too-many-ops";
		int kind = -1;
		for (int k = 0; k < OP_KINDS; k++)
			if (str_eq_n(s + start, colon - start, op_names[k]))
				kind = k;
		if (kind < 0)
			return "unknown-op";
		uint64_t count;
		if (!parse_u64(s + colon + 1, i - colon - 1, MAX_COUNT, &count))
			return "bad-op-count";
		ops[n_ops].kind = (enum op_kind)kind;
		ops[n_ops].count = count;
		n_ops++;
		i++; /* skip ',' (or step past the end) */
	}
	return NULL;
}

static const char *parse_cmdline(const char *s)
{
	bool have_ops = false;
	size_t i = 0;
	while (s[i]) {
		while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n')
			i++;
		if (!s[i])
			break;
		size_t start = i;
		while (s[i] && s[i] != ' ' && s[i] != '\t' && s[i] != '\n')
			i++;
		const char *tok = s + start;
		size_t len = i - start;
		size_t eq = 0;
		while (eq < len && tok[eq] != '=')
			eq++;
		if (eq == len)
			continue;
		const char *val = tok + eq + 1;
		size_t vlen = len - eq - 1;
		if (str_eq_n(tok, eq, "ops")) {
			if (have_ops)
				return "duplicate-ops";
			have_ops = true;
			const char *err = parse_ops(val, vlen);
			if (err)
				return err;
		} else if (str_eq_n(tok, eq, "hlt_timer_us")) {
			uint64_t us;
			if (!parse_u64(val, vlen, HLT_TIMER_US_MAX, &us) || us < HLT_TIMER_US_MIN)
				return "bad-hlt-timer-us";
			hlt_timer_us = (uint32_t)us;
		} else if (str_eq_n(tok, eq, "begin_wait_us")) {
			uint64_t us;
			if (!parse_u64(val, vlen, 10000000, &us))
				return "bad-begin-wait-us";
			begin_wait_us = (uint32_t)us;
		} else if (str_eq_n(tok, eq, "dev_timeout_us")) {
			uint64_t us;
			if (!parse_u64(val, vlen, 100000000, &us) || us == 0)
				return "bad-dev-timeout-us";
			dev_timeout_us = (uint32_t)us;
		} else if (str_eq_n(tok, eq, "cli_window_us")) {
			uint64_t us;
			if (!parse_u64(val, vlen, 10000000, &us) || us == 0)
				return "bad-cli-window-us";
			cli_window_us = (uint32_t)us;
		} else if (str_eq_n(tok, eq, "race_timeout_us")) {
			uint64_t us;
			if (!parse_u64(val, vlen, 10000000, &us) || us == 0)
				return "bad-race-timeout-us";
			race_timeout_us = (uint32_t)us;
		}
		/* exit= is scanned separately; anything else is ignored */
	}
	if (!have_ops)
		return "missing-ops";
	return NULL;
}

static bool cmdline_has_exit(const char *s)
{
	size_t i = 0;
	while (s[i]) {
		if ((i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t') && s[i] == 'e' && s[i + 1] == 'x' &&
		    s[i + 2] == 'i' && s[i + 3] == 't' && s[i + 4] == '=' && s[i + 5] == '1' &&
		    (s[i + 6] == 0 || s[i + 6] == ' ' || s[i + 6] == '\t' || s[i + 6] == '\n'))
			return true;
		i++;
	}
	return false;
}

/* returns "pvh", "multiboot" or NULL; copies the command line (or sets *err) */
static const char *read_boot_info(uint32_t magic, uint32_t info, const char **err)
{
	const char *boot = NULL;
	uint64_t cmd = 0;
	*err = NULL;
	if (magic == MB1_BOOT_MAGIC && info) {
		const volatile uint32_t *mbi = (const volatile uint32_t *)(uintptr_t)info;
		boot = "multiboot";
		if (mbi[0] & MB1_INFO_CMDLINE)
			cmd = mbi[4];
	} else if (info && *(const volatile uint32_t *)(uintptr_t)info == PVH_START_MAGIC) {
		boot = "pvh";
		cmd = *(const volatile uint64_t *)(uintptr_t)(info + 24); /* cmdline_paddr */
	} else {
		*err = "unknown-boot-protocol";
		return "unknown";
	}
	if (!cmd)
		return boot; /* empty command line -> missing-ops later */
	if (cmd >= MAPPED_LIMIT - CMDLINE_MAX) {
		*err = "cmdline-not-mapped";
		return boot;
	}
	const char *src = (const char *)(uintptr_t)cmd;
	size_t n = 0;
	while (n < CMDLINE_MAX - 1 && src[n]) {
		cmdline[n] = src[n];
		n++;
	}
	cmdline[n] = 0;
	if (src[n])
		*err = "cmdline-too-long";
	return boot;
}

/* ------------------------------------------------------------------ setup */

void set_gate(unsigned vec, uint64_t handler)
{
	idt[vec].off_lo = (uint16_t)handler;
	idt[vec].sel = 0x08;
	idt[vec].ist = 0;
	idt[vec].type = 0x8e; /* present, DPL0, 64-bit interrupt gate */
	idt[vec].off_mid = (uint16_t)(handler >> 16);
	idt[vec].off_hi = (uint32_t)(handler >> 32);
	idt[vec].zero = 0;
}

static void idt_init(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) desc = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };

	for (unsigned v = 0; v < 32; v++)
		set_gate(v, probe_exc_stubs[v]);
	for (unsigned v = 32; v < 256; v++)
		set_gate(v, (uint64_t)(uintptr_t)probe_unexpected_irq);
	set_gate(TIMER_VECTOR, (uint64_t)(uintptr_t)hlt_timer_isr);
	set_gate(KICK_VECTOR, (uint64_t)(uintptr_t)kick_isr);
	set_gate(KICK_VECTOR_B, (uint64_t)(uintptr_t)race_isr_b);
	set_gate(SPURIOUS_VECTOR, (uint64_t)(uintptr_t)probe_spurious_isr);
	__asm__ volatile("lidt %0" : : "m"(desc));
}

static void idt_load(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) desc = { sizeof(idt) - 1, (uint64_t)(uintptr_t)idt };
	__asm__ volatile("lidt %0" : : "m"(desc));
}

static void pic_mask_all(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

static const char *x2apic_init(void)
{
	uint32_t r[4];
	cpuid(1, 0, r);
	if (!(r[2] & (1u << 21)))
		return "no-x2apic";
	uint64_t base = rdmsr(MSR_APIC_BASE);
	if (!(base & APIC_BASE_EN))
		wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN);
	wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_EXTD);
	wrmsr(X2APIC_TPR, 0);
	wrmsr(X2APIC_SVR, 0x100 | SPURIOUS_VECTOR);
	wrmsr(X2APIC_LVT_LINT0, LVT_MASKED);
	wrmsr(X2APIC_LVT_LINT1, LVT_MASKED);
	wrmsr(X2APIC_LVT_ERROR, LVT_MASKED);
	wrmsr(X2APIC_TMICT, 0);
	wrmsr(X2APIC_TDCR, TDCR_DIV_1);
	wrmsr(X2APIC_LVT_TIMER, TIMER_VECTOR); /* one-shot, unmasked */
	return NULL;
}

/* Read and write every page of the loaded image (window code, data, IDT,
 * GDT, page tables, stack) so that no first touch happens inside the window.
 * "lock orb $0" is a single read-modify-write that leaves the byte unchanged. */
static void prefault_image(void)
{
	for (uintptr_t p = (uintptr_t)__image_start; p < (uintptr_t)__image_end; p += 4096)
		__asm__ volatile("lock orb $0, (%0)" : : "r"(p) : "memory");
	__asm__ volatile("lock orb $0, (%0)" : : "r"((uintptr_t)__image_end - 1) : "memory");
}

/* ------------------------------------------------- the kicker vCPU (ipi-race) */

static volatile uint64_t ap_alive, race_go;
uint64_t tsc_per_us;
static uint64_t race_n, race_sent, race_late, race_lat_sum, race_lat_n, race_lat_max, race_eoi_avg;

static inline uint64_t rdtsc_plain(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

/* Kicks go in pairs. A (vector 0x50) lands wherever it lands; the kicked vCPU takes it with
 * an NMI exit, runs its handler and writes EOI: an exit and a re-entry. B (vector 0x60, so it
 * never merges with A) is sent a random 1..3 EOI-exit times after A, so B's kick lands all
 * along that sequence, the EOI re-entry included: the window the seed leaves open sits just
 * before its VMRUN. (Sending B only once A is taken comes too late: a kick takes longer to
 * arrive than an EOI exit takes.) A kick not taken within the timeout is late: with HLT
 * exiting off and the guest spinning, nothing else makes the vCPU exit. */
/* The kick's latency: from its send (t0, the kicker's TSC) to its handler's TSC (*at: the
 * kicked vCPU's; KVM keeps them in step), not to when this wait saw it: kick A is often taken
 * while the kicker still waits to send B. */
static bool race_wait(volatile uint64_t *irqs, volatile uint64_t *at, uint64_t before, uint64_t t0,
		      uint64_t timeout, uint64_t *lat)
{
	while (*irqs == before && rdtsc_plain() - t0 < timeout)
		;
	if (*irqs == before)
		return false;
	*lat = *at > t0 ? *at - t0 : 0;
	return true;
}

static void race_account(bool taken, uint64_t lat)
{
	if (!taken) {
		race_late++;
		return;
	}
	race_lat_sum += lat;
	race_lat_n++;
	if (lat > race_lat_max)
		race_lat_max = lat;
}

static void ap_race(void)
{
	uint64_t timeout = (uint64_t)race_timeout_us * tsc_per_us;
	uint64_t rng = 0x2545f4914f6cdd1dull;
	uint64_t eoi_avg = 0; /* running average of the handler's EOI exit, TSC cycles */

	for (uint64_t i = 0; i < race_n; i += 2) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		uint64_t a_before = race_irqs_a, b_before = race_irqs_b, lat = 0;
		uint64_t ta = rdtsc_plain(), tb = 0;
		wrmsr(X2APIC_ICR, KICK_VECTOR); /* fixed, physical, to APIC ID 0 */
		race_sent++;
		if (i + 1 < race_n) {
			uint64_t delay = eoi_avg + (eoi_avg ? rng % (2 * eoi_avg) : 0);
			while (rdtsc_plain() - ta < delay)
				;
			tb = rdtsc_plain();
			wrmsr(X2APIC_ICR, KICK_VECTOR_B);
			race_sent++;
		}
		race_account(race_wait(&race_irqs_a, &race_at_a, a_before, ta, timeout, &lat), lat);
		if (tb)
			race_account(race_wait(&race_irqs_b, &race_at_b, b_before, tb, timeout, &lat), lat);
		if (race_eoi_cost)
			eoi_avg = eoi_avg ? (7 * eoi_avg + race_eoi_cost) / 8 : race_eoi_cost;
		race_eoi_avg = eoi_avg;
	}
}

void ap_main(void)
{
	uint64_t base = rdmsr(MSR_APIC_BASE);
	if (!(base & APIC_BASE_EN))
		wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN);
	wrmsr(MSR_APIC_BASE, base | APIC_BASE_EN | APIC_BASE_EXTD);
	idt_load();
	ap_alive = 1;
	for (;;) {
		while (!race_go)
			;
		race_go = 0;
		ap_race();
		race_done = 1;
	}
}

static const char *start_ap(void)
{
	if (ap_alive)
		return NULL;
	memcpy((void *)AP_TRAMPOLINE, ap_trampoline, (size_t)(ap_trampoline_end - ap_trampoline));
	wrmsr(X2APIC_ICR, (1ull << 32) | ICR_INIT);
	wrmsr(X2APIC_ICR, (1ull << 32) | ICR_STARTUP);
	bool second_sipi = false;
	for (uint64_t t = rdtsc_ordered(); !ap_alive;) {
		uint64_t waited = rdtsc_ordered() - t;
		if (waited > (1ull << 34))
			return "ap-did-not-start";
		if (waited > (1ull << 30) && !second_sipi) {
			wrmsr(X2APIC_ICR, (1ull << 32) | ICR_STARTUP); /* a second SIPI, as the MP spec asks */
			second_sipi = true;
		}
	}
	return NULL;
}

/* TSC ticks per microsecond against the APIC timer (1 GHz under KVM), timer masked. */
void calibrate_tsc(void)
{
	if (tsc_per_us)
		return;
	wrmsr(X2APIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR);
	wrmsr(X2APIC_TMICT, 0xffffffffu);
	uint64_t c0 = rdmsr(X2APIC_TMCCT), t0 = rdtsc_ordered(), t1;
	while ((t1 = rdtsc_ordered()) - t0 < (1ull << 24))
		;
	uint64_t c1 = rdmsr(X2APIC_TMCCT);
	wrmsr(X2APIC_TMICT, 0);
	wrmsr(X2APIC_LVT_TIMER, TIMER_VECTOR);
	uint64_t ns = c0 > c1 ? c0 - c1 : 1;
	tsc_per_us = (t1 - t0) * 1000 / ns;
	if (!tsc_per_us)
		tsc_per_us = 1;
}

/* ------------------------------------------------------------------- main */

/* "begin" tells the host an op starts (it snapshots its counters then); with settle the
 * probe then waits 200 ms, as the host polls every 50 ms. */
void announce_begin(const char *name, bool settle)
{
	put_str("hil-probe: event=begin name=");
	put_str(name);
	put_char('\n');
	if (settle)
		for (uint64_t t = rdtsc_ordered(); rdtsc_ordered() - t < 200000 * tsc_per_us;)
			;
}

/* The simple ops one iteration at a time, each timed (TSC, glue code outside the window:
 * no exits), so hil's calibration reads per-iteration order statistics, not a mean a single
 * host hiccup can skew. The op's own code and exits are those of op_<op>(1). */
#define ITER_MAX_SAMPLES 1024
static uint64_t iter_tsc[ITER_MAX_SAMPLES];

static void timed_iterations(int kind, uint64_t count)
{
	for (uint64_t i = 0; i < count; i++) {
		uint64_t t = rdtsc_ordered();
		switch (kind) {
		case OP_CPUID:
			op_cpuid(1);
			break;
		case OP_PIO_KERNEL:
			op_pio_kernel(1);
			break;
		case OP_PIO_USER:
			op_pio_user(1);
			break;
		case OP_MSR:
			op_msr(1);
			break;
		default:
			op_hlt(1, (uint64_t)hlt_timer_us * APIC_TICKS_PER_US);
			break;
		}
		if (i < ITER_MAX_SAMPLES)
			iter_tsc[i] = rdtsc_ordered() - t;
	}
}

static void run_op(const struct op *op)
{
	switch (op->kind) {
	case OP_DEV_MSI:
	case OP_DEV_DMA:
	case OP_NET_RX:
	case OP_NET_TX:
		dev_run_op((enum dev_op)(op->kind - OP_DEV_MSI), op_names[op->kind], op->count);
		ops_done++;
		return;
	default:
		break;
	}

	uint64_t irqs_before = hlt_timer_irqs;
	uint64_t hlts_before = hlt_executed;
	uint64_t kicks_before;
	bool from_outside = op->kind == OP_KICKS || op->kind == OP_IPI_RACE || op->kind == OP_CLI_WINDOW;
	if (from_outside || op->kind <= OP_HLT)
		calibrate_tsc(); /* before "begin": the kicks must not meet its timer exits */
	if (op->kind == OP_IPI_RACE) {
		const char *err = start_ap();
		if (err)
			fail(err);
		race_n = op->count;
		race_sent = race_late = race_lat_sum = race_lat_n = race_lat_max = 0;
		race_done = 0;
	}
	if (op->kind == OP_CLI_WINDOW)
		cli_window_irqs = cli_window_masked_irqs = cli_window_at_sti = cli_window_windows =
			cli_window_masked_rip = 0;
	if (from_outside) {
		/* the handler lives in the op's own code range, so its EOI exit counts for the op */
		set_gate(KICK_VECTOR, (uint64_t)(uintptr_t)(op->kind == OP_KICKS ? kick_isr :
							    op->kind == OP_CLI_WINDOW ? cli_window_isr : race_isr));
		put_str("hil-probe: event=begin name=");
		put_str(op_names[op->kind]);
		put_char('\n');
		/* time for the host to take its before-the-op snapshot (it polls every 50 ms) */
		for (uint64_t t = rdtsc_ordered(); rdtsc_ordered() - t < (uint64_t)begin_wait_us * tsc_per_us;)
			;
	}
	kicks_before = kick_irqs;
	uint64_t t0 = rdtsc_ordered();
	if (op->kind == OP_IPI_RACE)
		race_go = 1;
	if (op->count) {
		switch (op->kind) {
		case OP_CPUID:
		case OP_PIO_KERNEL:
		case OP_PIO_USER:
		case OP_MSR:
		case OP_HLT:
			timed_iterations(op->kind, op->count);
			break;
		case OP_KICKS:
			op_kicks(op->count);
			break;
		case OP_IPI_RACE:
			op_ipi_race(op->count);
			break;
		case OP_CLI_WINDOW:
			/* gives up after dev_timeout_us without an interrupt: the verdict counts what was taken */
			op_cli_window(op->count, (uint64_t)cli_window_us * tsc_per_us,
				      (uint64_t)dev_timeout_us * tsc_per_us);
			break;
		default:
			break;
		}
	}
	uint64_t t1 = rdtsc_ordered();
	put_str("hil-probe: event=op name=");
	put_str(op_names[op->kind]);
	put_str(" count=");
	put_dec(op->count);
	put_str(" tsc=");
	put_dec(t1 - t0);
	if (op->kind == OP_HLT) {
		put_str(" hlts=");
		put_dec(hlt_executed - hlts_before);
	}
	if (op->kind <= OP_HLT) {
		put_str(" tsc_khz=");
		put_dec(tsc_per_us * 1000);
		put_str(" samples=");
		put_dec(op->count < ITER_MAX_SAMPLES ? op->count : ITER_MAX_SAMPLES);
	}
	if (op->kind == OP_HLT) {
		put_str(" timer_us=");
		put_dec(hlt_timer_us);
	}
	if (op->kind == OP_KICKS || op->kind == OP_IPI_RACE) {
		put_str(" irqs=");
		put_dec(kick_irqs - kicks_before);
		put_str(" tsc_khz=");
		put_dec(tsc_per_us * 1000);
	}
	if (op->kind == OP_CLI_WINDOW) {
		put_str(" irqs=");
		put_dec(cli_window_irqs);
		put_str(" masked=");
		put_dec(cli_window_masked_irqs);
		put_str(" at_sti=");
		put_dec(cli_window_at_sti);
		put_str(" windows=");
		put_dec(cli_window_windows);
		put_str(" masked_rip=");
		put_dec(cli_window_masked_rip);
		put_str(" tsc_khz=");
		put_dec(tsc_per_us * 1000);
	}
	if (op->kind == OP_IPI_RACE) {
		put_str(" sent=");
		put_dec(race_sent);
		put_str(" late=");
		put_dec(race_late);
		put_str(" lat_avg_ns=");
		put_dec(race_lat_n ? race_lat_sum * 1000 / tsc_per_us / race_lat_n : 0);
		put_str(" lat_max_ns=");
		put_dec(race_lat_max * 1000 / tsc_per_us);
		put_str(" eoi_exit_ns=");
		put_dec(race_eoi_avg * 1000 / tsc_per_us);

	}
	put_char('\n');
	if (op->kind <= OP_HLT)
		put_samples(op_names[op->kind], "iter", "tsc", iter_tsc, NULL, 0,
			    op->count < ITER_MAX_SAMPLES ? op->count : ITER_MAX_SAMPLES);
	if (op->kind == OP_HLT && hlt_timer_irqs - irqs_before != op->count)
		fail("hlt-timer-irq-count-mismatch");
	ops_done++;
}

void probe_main(uint32_t magic, uint32_t info)
{
	const char *err;

	serial_init();
	idt_init();
	pic_mask_all();
	const char *boot = read_boot_info(magic, info, &err);
	exit_on_done = cmdline_has_exit(cmdline);

	put_str("hil-probe: event=start version=");
	put_dec(PROBE_VERSION);
	put_str(" window=");
	put_hex((uintptr_t)__window_start);
	put_char('-');
	put_hex((uintptr_t)__window_end);
	put_str(" boot=");
	put_str(boot);
	put_char('\n');

	if (err)
		fail(err);
	err = parse_cmdline(cmdline);
	if (err)
		fail(err);
	err = x2apic_init();
	if (err)
		fail(err);
	prefault_image();

	for (unsigned i = 0; i < n_ops; i++)
		run_op(&ops[i]);
	finish(true);
}
