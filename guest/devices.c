/*
 * hil probe guest: PCI devices and the device ops.
 *
 *   dev-msi:N  QEMU's edu device (PCI 1234:11e8) raises an MSI N times, one at a time:
 *              write 1 to BAR0+0x60, wait for the handler, which acks it (BAR0+0x64) and EOIs.
 *   dev-dma:N  N edu DMA transfers of DMA_LEN bytes, alternately RAM -> edu buffer and back
 *              (the copy back is compared), each with its completion MSI.
 *   net-rx:N   virtio-net (virtio 1.0 modern PCI, split virtqueues, MSI-X): receive N probe
 *              frames sent by the host; count them, check their order, refill the buffers.
 *   net-tx:N   send N probe frames, one at a time, each waited for by its TX interrupt.
 *
 * PCI access, BAR mapping and MSI / MSI-X programming: pci.c.
 *
 * The op loops are C functions placed in the op's window section (WINDOW(op)); they call
 * nothing outside it (always_inline helpers only), so every exit they cause (MMIO writes,
 * notifies, interrupt EOIs in the handlers of window.S) lands in the op's range.
 *
 * Frames (net-rx and net-tx), after the 14-byte Ethernet header with type 0x88b5:
 *   "HILP", u32 sequence number (LE), u64 sender timestamp (LE); padded to 60 bytes.
 */
#include "probe.h"
#include "devconf.h"
#include "pci.h"

#define WINDOW(op) __attribute__((section(".text.window." op), noinline, used))
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- device memory: rings, buffers, samples, page tables (identity-mapped RAM, outside
 * the image so ops that use no device leave memory untouched) ---- */
#define DEV_MEM_BASE 0x400000ull
#define DEV_MEM_SIZE 0x80000ull
#define PAGE 4096ull

#define EDU_VENDOR 0x1234
#define EDU_DEVICE 0x11e8
#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_NET_MODERN 0x1041
#define VIRTIO_NET_TRANSITIONAL 0x1000

#define CAP_VENDOR 0x09

#define EDU_ID 0x00
#define EDU_STATUS 0x20
#define EDU_IRQ_RAISE 0x60
#define EDU_IRQ_ACK 0x64
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_CNT 0x90
#define EDU_DMA_CMD 0x98
#define EDU_DMA_RUN 1u
#define EDU_DMA_TO_RAM 2u
#define EDU_DMA_IRQ 4u
#define EDU_DMA_IRQ_BIT 0x100u   /* the status bit a finished DMA raises */
#define EDU_DMA_BUF 0x40000u     /* the device's own buffer, as a DMA address */
#define EDU_BAR_SIZE 0x100000ull
#define DMA_LEN 256u

/* virtio 1.0 modern PCI */
#define VIRTIO_CAP_COMMON 1
#define VIRTIO_CAP_NOTIFY 2
#define VIRTIO_CAP_DEVICE 4
#define VC_DFSELECT 0x00
#define VC_DF 0x04
#define VC_GFSELECT 0x08
#define VC_GF 0x0c
#define VC_MSIX_CONFIG 0x10
#define VC_STATUS 0x14
#define VC_Q_SELECT 0x16
#define VC_Q_SIZE 0x18
#define VC_Q_MSIX 0x1a
#define VC_Q_ENABLE 0x1c
#define VC_Q_NOFF 0x1e
#define VC_Q_DESC 0x20
#define VC_Q_AVAIL 0x28
#define VC_Q_USED 0x30
#define VS_ACK 1u
#define VS_DRIVER 2u
#define VS_DRIVER_OK 4u
#define VS_FEATURES_OK 8u
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NO_VECTOR 0xffff
#define VRING_DESC_F_WRITE 2
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1
#define NET_HDR_LEN 12           /* struct virtio_net_hdr with num_buffers (VERSION_1) */
#define NET_BUF_LEN 2048u
#define NET_RX_QSIZE 64u
#define NET_TX_QSIZE 16u
#define FRAME_LEN 60u
#define FRAME_TYPE 0x88b5        /* IEEE 802 local experimental ethertype */
#define SAMPLE_LINE 64

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vq {
	uint16_t size, index, avail_idx, last_used;
	volatile struct vq_desc *desc;
	volatile uint16_t *avail; /* flags, idx, ring[size] */
	volatile uint16_t *used;  /* flags, idx, then {u32 id, u32 len}[size] from used + 2 */
	volatile uint16_t *notify;
	uint8_t *bufs;
};

extern char __window_start[], __window_end[];
extern void dev_msi_isr(void), dev_dma_isr(void), net_rx_isr(void), net_tx_isr(void);
extern volatile uint64_t dev_irqs, net_rx_irqs, net_tx_irqs;
extern uint64_t *volatile dev_isr_tsc;
extern volatile uint32_t *volatile dev_ack_reg;
extern volatile uint32_t dev_ack_val;

static uint64_t *req_tsc;    /* [DEV_MAX_SAMPLES] TSC at each request (MSI raise, DMA start, notify) */
static uint64_t *isr_tsc;    /* [DEV_MAX_SAMPLES] TSC at handler entry (dev_isr_tsc) */
static uint64_t *aux;        /* [DEV_MAX_SAMPLES] net-rx: sender timestamp per frame */
static uint8_t *dma_src, *dma_dst;
static bool dev_mem_ready;

/* ---------------------------------------------------------------- memory */

static void dev_mem_init(void)
{
	if (dev_mem_ready)
		return;
	uint8_t *m = (uint8_t *)(uintptr_t)DEV_MEM_BASE;
	mem_zero(m, DEV_MEM_SIZE); /* also faults every page in before any window runs */
	req_tsc = (uint64_t *)(m + 0x00000);
	isr_tsc = (uint64_t *)(m + 0x08000);
	aux = (uint64_t *)(m + 0x10000);
	mmio_map_init((uint64_t *)(m + 0x18000), 8);
	dma_src = m + 0x20000;
	dma_dst = m + 0x21000;
	/* 0x22000..: virtqueues and their buffers (net_alloc) */
	dev_isr_tsc = isr_tsc;
	dev_mem_ready = true;
}

static uint8_t *net_alloc_next = (uint8_t *)(uintptr_t)(DEV_MEM_BASE + 0x22000);

static void *net_alloc(uint64_t size)
{
	uint8_t *p = net_alloc_next;
	net_alloc_next += (size + PAGE - 1) & ~(PAGE - 1);
	if ((uintptr_t)net_alloc_next > DEV_MEM_BASE + DEV_MEM_SIZE)
		fail("device-memory-exhausted");
	return p;
}

/* `event=device kind=<edu|virtio-net> bdf=<bus:dev.fn> id=<vendor:device> mmio=0x<addr>`: where
 * the firmware put the device, for the host's log. */
static void put_device(const char *kind, uint32_t bdf, uint16_t device, uint64_t mmio)
{
	static const char hex[] = "0123456789abcdef";
	put_str("hil-probe: event=device kind=");
	put_str(kind);
	put_str(" bdf=");
	put_char(hex[(bdf >> 12) & 15]);
	put_char(hex[(bdf >> 8) & 15]);
	put_char(':');
	put_char(hex[(bdf >> 7) & 1]);
	put_char(hex[(bdf >> 3) & 15]);
	put_char('.');
	put_char(hex[bdf & 7]);
	put_str(" id=");
	put_str(kind[0] == 'e' ? "1234:" : "1af4:");
	for (int sh = 12; sh >= 0; sh -= 4)
		put_char(hex[(device >> sh) & 15]);
	put_str(" mmio=");
	put_hex(mmio);
	put_str(" config=");
	put_str(pci_config_mechanism());
	put_char('\n');
}

/* ------------------------------------------------------------ window helpers */

ALWAYS_INLINE uint64_t tsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

ALWAYS_INLINE void mmio_w32(volatile uint8_t *base, unsigned off, uint32_t v)
{
	*(volatile uint32_t *)(base + off) = v;
}

ALWAYS_INLINE void barrier(void)
{
	__asm__ volatile("" : : : "memory");
}

ALWAYS_INLINE void full_fence(void)
{
	__asm__ volatile("mfence" : : : "memory");
}

/* ---------------------------------------------------------------- edu */

static volatile uint8_t *edu;

static void edu_init(void)
{
	if (edu)
		return;
	uint32_t bdf;
	if (!pci_find(EDU_VENDOR, EDU_DEVICE, &bdf))
		fail("no-edu-device");
	pci_assign_bars(bdf);
	uint64_t bar = pci_bar(bdf, 0);
	if (!bar)
		fail("edu-bar0-not-assigned");
	map_mmio(bar, EDU_BAR_SIZE);
	pci_enable(bdf);
	volatile uint8_t *e = (volatile uint8_t *)(uintptr_t)bar;
	if ((*(volatile uint32_t *)(e + EDU_ID) & 0xff) != 0xed)
		fail("edu-bad-identification");
	put_device("edu", bdf, EDU_DEVICE, bar);
	mmio_w32(e, EDU_STATUS, 0);              /* no factorial interrupts */
	mmio_w32(e, EDU_IRQ_ACK, 0xffffffffu);   /* nothing pending */
	pci_msi_enable(bdf, EDU_VECTOR);
	edu = e;
}

struct wait_result {
	uint64_t done;      /* requests whose interrupt arrived */
	uint64_t bad;       /* dev-dma: copies back that differ */
};

/* One MSI at a time: request, spin (interrupts on) until the handler has counted it. */
WINDOW("dev_msi") void dev_msi_loop(uint64_t n, uint64_t timeout, struct wait_result *r)
{
	volatile uint8_t *e = edu;
	uint64_t i;
	__asm__ volatile("sti");
	for (i = 0; i < n; i++) {
		uint64_t t = tsc();
		if (i < DEV_MAX_SAMPLES)
			req_tsc[i] = t;
		mmio_w32(e, EDU_IRQ_RAISE, 1);
		while (dev_irqs == i)
			if (tsc() - t > timeout)
				goto out;
	}
out:
	__asm__ volatile("cli");
	r->done = i;
}

/* Transfer i: even i copies RAM -> edu's buffer, odd i copies it back and compares. */
WINDOW("dev_dma") void dev_dma_loop(uint64_t n, uint64_t timeout, struct wait_result *r)
{
	volatile uint8_t *e = edu;
	volatile uint8_t *src = dma_src, *dst = dma_dst;
	uint64_t i, bad = 0;
	__asm__ volatile("sti");
	for (i = 0; i < n; i++) {
		bool back = i & 1;
		if (!back)
			for (unsigned k = 0; k < DMA_LEN; k++)
				src[k] = (uint8_t)(i * 7 + k * 13 + 1);
		mmio_w32(e, EDU_DMA_SRC, back ? EDU_DMA_BUF : (uint32_t)(uintptr_t)src);
		mmio_w32(e, EDU_DMA_DST, back ? (uint32_t)(uintptr_t)dst : EDU_DMA_BUF);
		mmio_w32(e, EDU_DMA_CNT, DMA_LEN);
		uint64_t t = tsc();
		if (i < DEV_MAX_SAMPLES)
			req_tsc[i] = t;
		mmio_w32(e, EDU_DMA_CMD, EDU_DMA_RUN | EDU_DMA_IRQ | (back ? EDU_DMA_TO_RAM : 0));
		while (dev_irqs == i)
			if (tsc() - t > timeout)
				goto out;
		if (back) {
			for (unsigned k = 0; k < DMA_LEN; k++)
				if (dst[k] != src[k]) {
					bad++;
					break;
				}
			for (unsigned k = 0; k < DMA_LEN; k++)
				dst[k] = 0;
		}
	}
out:
	__asm__ volatile("cli");
	r->done = i;
	r->bad = bad;
}

/* ------------------------------------------------------------ virtio-net */

static struct vnet {
	bool ready;
	volatile uint8_t *common;
	uint8_t mac[6];
	struct vq rx, tx;
} net;

ALWAYS_INLINE volatile uint8_t *vc8(unsigned off)
{
	return net.common + off;
}
#define VC16(off) (*(volatile uint16_t *)(net.common + (off)))
#define VC32(off) (*(volatile uint32_t *)(net.common + (off)))

static void vq_setup(struct vq *q, uint16_t index, uint16_t want, uint16_t msix_entry,
		     volatile uint8_t *notify_base, uint32_t notify_mult)
{
	VC16(VC_Q_SELECT) = index;
	uint16_t max = VC16(VC_Q_SIZE);
	if (!max)
		fail("virtio-net-queue-missing");
	uint16_t size = want;
	while (size > max)
		size >>= 1;
	q->size = size;
	q->index = index;
	q->desc = net_alloc(16ull * size);
	q->avail = net_alloc(6 + 2ull * size);
	q->used = net_alloc(6 + 8ull * size);
	q->bufs = net_alloc((uint64_t)NET_BUF_LEN * size);
	VC16(VC_Q_SIZE) = size;
	VC16(VC_Q_MSIX) = msix_entry;
	if (VC16(VC_Q_MSIX) != msix_entry)
		fail("virtio-net-refused-msix-vector");
	uint64_t a[3] = { (uintptr_t)q->desc, (uintptr_t)q->avail, (uintptr_t)q->used };
	for (unsigned i = 0; i < 3; i++) {
		VC32(VC_Q_DESC + 8 * i) = (uint32_t)a[i];
		VC32(VC_Q_DESC + 8 * i + 4) = (uint32_t)(a[i] >> 32);
	}
	q->notify = (volatile uint16_t *)(notify_base + (uint64_t)VC16(VC_Q_NOFF) * notify_mult);
	VC16(VC_Q_ENABLE) = 1;
}

static void net_init(void)
{
	if (net.ready)
		return;
	uint32_t bdf;
	uint16_t device = VIRTIO_NET_MODERN;
	if (!pci_find(VIRTIO_VENDOR, device, &bdf) && !pci_find(VIRTIO_VENDOR, device = VIRTIO_NET_TRANSITIONAL, &bdf))
		fail("no-virtio-net-device");
	pci_assign_bars(bdf);
	pci_enable(bdf);
	volatile uint8_t *notify_base = NULL, *devcfg = NULL;
	uint32_t notify_mult = 0;
	for (unsigned cap = pci_cap(bdf, CAP_VENDOR, 0); cap; cap = pci_cap(bdf, CAP_VENDOR, cap)) {
		uint8_t type = pci_read8(bdf, cap + 3);
		uint64_t bar = pci_bar(bdf, pci_read8(bdf, cap + 4));
		uint32_t off = pci_read32(bdf, cap + 8), len = pci_read32(bdf, cap + 12);
		if (!bar || !len)
			continue;
		volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)(bar + off);
		if (type == VIRTIO_CAP_COMMON && !net.common) {
			map_mmio(bar + off, len);
			net.common = p;
		} else if (type == VIRTIO_CAP_NOTIFY && !notify_base) {
			map_mmio(bar + off, len);
			notify_base = p;
			notify_mult = pci_read32(bdf, cap + 16);
		} else if (type == VIRTIO_CAP_DEVICE && !devcfg) {
			map_mmio(bar + off, len);
			devcfg = p;
		}
	}
	if (!net.common || !notify_base)
		fail("virtio-net-not-modern");
	put_device("virtio-net", bdf, device, (uint64_t)(uintptr_t)net.common);
	static const uint8_t vectors[2] = { NET_RX_VECTOR, NET_TX_VECTOR };
	pci_msix_enable(bdf, vectors, 2);

	*vc8(VC_STATUS) = 0; /* reset */
	for (unsigned i = 0; *vc8(VC_STATUS) && i < 1000000; i++)
		;
	*vc8(VC_STATUS) = VS_ACK;
	*vc8(VC_STATUS) = VS_ACK | VS_DRIVER;
	VC32(VC_DFSELECT) = 1;
	if (!(VC32(VC_DF) & 1)) /* VIRTIO_F_VERSION_1 (bit 32) */
		fail("virtio-net-not-version-1");
	VC32(VC_DFSELECT) = 0;
	uint32_t lo = VC32(VC_DF) & (1u << VIRTIO_NET_F_MAC);
	VC32(VC_GFSELECT) = 0;
	VC32(VC_GF) = lo;
	VC32(VC_GFSELECT) = 1;
	VC32(VC_GF) = 1;
	*vc8(VC_STATUS) = VS_ACK | VS_DRIVER | VS_FEATURES_OK;
	if (!(*vc8(VC_STATUS) & VS_FEATURES_OK))
		fail("virtio-net-features-refused");
	VC16(VC_MSIX_CONFIG) = VIRTIO_NO_VECTOR;
	vq_setup(&net.rx, 0, NET_RX_QSIZE, 0, notify_base, notify_mult);
	vq_setup(&net.tx, 1, NET_TX_QSIZE, 1, notify_base, notify_mult);
	if (lo && devcfg)
		for (unsigned i = 0; i < 6; i++)
			net.mac[i] = devcfg[i];
	else
		net.mac[0] = 0x02; /* locally administered, all else 0 */

	/* every receive buffer posted; receive interrupts off until net-rx runs */
	struct vq *q = &net.rx;
	q->avail[0] = VRING_AVAIL_F_NO_INTERRUPT;
	for (uint16_t i = 0; i < q->size; i++) {
		q->desc[i].addr = (uintptr_t)(q->bufs + (uint64_t)NET_BUF_LEN * i);
		q->desc[i].len = NET_BUF_LEN;
		q->desc[i].flags = VRING_DESC_F_WRITE;
		q->desc[i].next = 0;
		q->avail[2 + i] = i;
	}
	q->avail_idx = q->size;
	barrier();
	q->avail[1] = q->avail_idx;
	*vc8(VC_STATUS) = VS_ACK | VS_DRIVER | VS_FEATURES_OK | VS_DRIVER_OK;
	*q->notify = q->index;
	net.ready = true;
}

struct rx_result {
	uint64_t frames, other, notifies, first_seq;
	bool in_order;
};

ALWAYS_INLINE uint32_t le32_at(const volatile uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Receive until n probe frames arrived or none came for `timeout` TSC cycles. */
WINDOW("net_rx") void net_rx_loop(uint64_t n, uint64_t timeout, struct rx_result *r)
{
	struct vq *q = &net.rx;
	uint64_t frames = 0, other = 0, notifies = 0, first = 0, prev = 0;
	bool in_order = true;
	uint64_t last = tsc();
	q->avail[0] = 0; /* interrupts wanted */
	full_fence();
	__asm__ volatile("sti");
	while (frames < n) {
		uint16_t used_idx = q->used[1];
		if (used_idx == q->last_used) {
			if (tsc() - last > timeout)
				break;
			continue;
		}
		barrier();
		while (q->last_used != used_idx) {
			volatile uint32_t *u = (volatile uint32_t *)(q->used + 2) + 2 * (q->last_used % q->size);
			uint32_t id = u[0], len = u[1];
			const volatile uint8_t *f = q->bufs + (uint64_t)NET_BUF_LEN * (id % q->size) + NET_HDR_LEN;
			if (len >= NET_HDR_LEN + 30 && f[12] == (FRAME_TYPE >> 8) && f[13] == (FRAME_TYPE & 0xff) &&
			    f[14] == 'H' && f[15] == 'I' && f[16] == 'L' && f[17] == 'P') {
				uint64_t seq = le32_at(f + 18);
				if (frames == 0)
					first = seq;
				else if (seq != prev + 1)
					in_order = false;
				prev = seq;
				if (frames < DEV_MAX_SAMPLES)
					aux[frames] = (uint64_t)le32_at(f + 22) | (uint64_t)le32_at(f + 26) << 32;
				frames++;
			} else {
				other++;
			}
			q->avail[2 + q->avail_idx % q->size] = (uint16_t)id; /* refill: same buffer */
			q->avail_idx++;
			q->last_used++;
		}
		barrier();
		q->avail[1] = q->avail_idx;
		full_fence();
		if (!(q->used[0] & VRING_USED_F_NO_NOTIFY)) {
			*q->notify = q->index;
			notifies++;
		}
		last = tsc();
	}
	__asm__ volatile("cli");
	q->avail[0] = VRING_AVAIL_F_NO_INTERRUPT;
	r->frames = frames;
	r->other = other;
	r->notifies = notifies;
	r->first_seq = first;
	r->in_order = in_order;
}

struct tx_result {
	uint64_t sent, notifies;
};

/* Send n frames, one at a time: each waits for its used entry and its interrupt. */
WINDOW("net_tx") void net_tx_loop(uint64_t n, uint64_t timeout, struct tx_result *r)
{
	struct vq *q = &net.tx;
	uint64_t i, notifies = 0;
	__asm__ volatile("sti");
	for (i = 0; i < n; i++) {
		uint16_t d = (uint16_t)(q->avail_idx % q->size);
		volatile uint8_t *f = q->bufs + (uint64_t)NET_BUF_LEN * d + NET_HDR_LEN;
		for (unsigned k = 0; k < 6; k++) {
			f[k] = 0xff;
			f[6 + k] = net.mac[k];
		}
		f[12] = FRAME_TYPE >> 8;
		f[13] = FRAME_TYPE & 0xff;
		f[14] = 'H';
		f[15] = 'I';
		f[16] = 'L';
		f[17] = 'P';
		uint64_t t = tsc();
		for (unsigned k = 0; k < 4; k++)
			f[18 + k] = (uint8_t)(i >> (8 * k));
		for (unsigned k = 0; k < 8; k++)
			f[22 + k] = (uint8_t)(t >> (8 * k));
		q->desc[d].addr = (uintptr_t)(f - NET_HDR_LEN);
		q->desc[d].len = NET_HDR_LEN + FRAME_LEN;
		q->desc[d].flags = 0;
		q->avail[2 + d] = d;
		q->avail_idx++;
		barrier();
		q->avail[1] = q->avail_idx;
		full_fence();
		t = tsc();
		if (i < DEV_MAX_SAMPLES)
			req_tsc[i] = t;
		if (!(q->used[0] & VRING_USED_F_NO_NOTIFY)) {
			*q->notify = q->index;
			notifies++;
		}
		while (q->used[1] != q->avail_idx || net_tx_irqs == i)
			if (tsc() - t > timeout)
				goto out;
		q->last_used = q->avail_idx;
	}
out:
	__asm__ volatile("cli");
	r->sent = i;
	r->notifies = notifies;
}

/* ---------------------------------------------------------------- report */

/* `event=samples name=<op> kind=<kind> unit=<unit> first=<i> v=a,b,...`, SAMPLE_LINE values a
 * line; value i is a[i] - b[i] (b NULL: a[i] - base). */
void put_samples(const char *name, const char *kind, const char *unit, const uint64_t *a,
		 const uint64_t *b, uint64_t base, uint64_t n)
{
	if (n > DEV_MAX_SAMPLES)
		n = DEV_MAX_SAMPLES;
	for (uint64_t i = 0; i < n; i += SAMPLE_LINE) {
		put_str("hil-probe: event=samples name=");
		put_str(name);
		put_str(" kind=");
		put_str(kind);
		put_str(" unit=");
		put_str(unit);
		put_str(" first=");
		put_dec(i);
		put_str(" v=");
		for (uint64_t j = i; j < n && j < i + SAMPLE_LINE; j++) {
			if (j != i)
				put_char(',');
			put_dec(a[j] - (b ? b[j] : base));
		}
		put_char('\n');
	}
}

static void put_field(const char *key, uint64_t v)
{
	put_char(' ');
	put_str(key);
	put_char('=');
	put_dec(v);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

void dev_run_op(enum dev_op op, const char *name, uint64_t count)
{
	calibrate_tsc();
	dev_mem_init();
	if (op == DEV_MSI || op == DEV_DMA) {
		edu_init();
		dev_ack_reg = (volatile uint32_t *)(edu + EDU_IRQ_ACK);
		dev_ack_val = op == DEV_MSI ? 1 : EDU_DMA_IRQ_BIT;
		set_gate(EDU_VECTOR, (uint64_t)(uintptr_t)(op == DEV_MSI ? dev_msi_isr : dev_dma_isr));
	} else {
		net_init();
		set_gate(NET_RX_VECTOR, (uint64_t)(uintptr_t)net_rx_isr);
		set_gate(NET_TX_VECTOR, (uint64_t)(uintptr_t)net_tx_isr);
	}
	uint64_t timeout = (uint64_t)dev_timeout_us * tsc_per_us;
	struct wait_result w = { 0, 0 };
	struct rx_result rx = { 0, 0, 0, 0, true };
	struct tx_result tx = { 0, 0 };
	dev_irqs = net_rx_irqs = net_tx_irqs = 0;
	/* net-rx: the host starts sending when it sees "begin"; the others wait 200 ms for its snapshot */
	announce_begin(name, op != NET_RX);
	uint64_t t0 = rdtsc_ordered();
	if (count) {
		switch (op) {
		case DEV_MSI:
			dev_msi_loop(count, timeout, &w);
			break;
		case DEV_DMA:
			dev_dma_loop(count, timeout, &w);
			break;
		case NET_RX:
			net_rx_loop(count, timeout, &rx);
			break;
		case NET_TX:
			net_tx_loop(count, timeout, &tx);
			break;
		}
	}
	uint64_t t1 = rdtsc_ordered();
	uint64_t irqs = op == NET_RX ? net_rx_irqs : op == NET_TX ? net_tx_irqs : dev_irqs;
	put_str("hil-probe: event=op name=");
	put_str(name);
	put_field("count", count);
	put_field("tsc", t1 - t0);
	put_field("irqs", irqs);
	put_field("tsc_khz", tsc_per_us * 1000);
	const char *err = NULL;
	uint64_t done = 0;
	switch (op) {
	case DEV_MSI:
		done = w.done;
		put_field("raised", done);
		err = done < count ? "dev-msi-interrupt-timeout" : NULL;
		break;
	case DEV_DMA:
		done = w.done;
		put_field("transfers", done);
		put_field("data_errors", w.bad);
		err = done < count ? "dev-dma-interrupt-timeout" : w.bad ? "dev-dma-data-mismatch" : NULL;
		break;
	case NET_RX:
		done = rx.frames;
		put_field("frames", rx.frames);
		put_field("in_order", rx.in_order);
		put_field("first_seq", rx.first_seq);
		put_field("other", rx.other);
		put_field("notifies", rx.notifies);
		err = done < count ? "net-rx-timeout" : NULL;
		break;
	case NET_TX:
		done = tx.sent;
		put_field("frames", tx.sent);
		put_field("notifies", tx.notifies);
		err = done < count ? "net-tx-timeout" : NULL;
		break;
	}
	put_field("samples", min_u64(op == NET_RX ? irqs : done, DEV_MAX_SAMPLES));
	put_char('\n');
	if (op == NET_RX) {
		put_samples(name, "isr", "tsc", isr_tsc, NULL, t0, min_u64(irqs, DEV_MAX_SAMPLES));
		if (rx.frames)
			put_samples(name, "sender", "sender", aux, NULL, aux[0], min_u64(rx.frames, DEV_MAX_SAMPLES));
	} else {
		put_samples(name, "lat", "tsc", isr_tsc, req_tsc, 0, min_u64(done, irqs));
	}
	if (err)
		fail(err);
	if (irqs != done && op != NET_RX)
		fail("device-interrupt-count-mismatch");
}
