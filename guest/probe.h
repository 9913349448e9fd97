/*
 * hil probe guest: what probe.c shares with the device drivers (devices.c).
 */
#ifndef HIL_PROBE_H
#define HIL_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MAPPED_LIMIT (1ull << 30) /* identity-mapped RAM by entry.S (2 MiB pages, write-back) */

/* ------------------------------------------------------------------ x86 io */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outw(uint16_t port, uint16_t v)
{
	__asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}

static inline void outl(uint16_t port, uint32_t v)
{
	__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	__asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	__asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return ((uint64_t)hi << 32) | lo;
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)) : "memory");
}

static inline void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static inline uint64_t rdtsc_ordered(void)
{
	uint32_t lo, hi;
	__asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

/* ------------------------------------------------------ exported by probe.c */

extern uint64_t tsc_per_us;
extern uint32_t dev_timeout_us;

void put_char(char c);
void put_str(const char *s);
void put_dec(uint64_t v);
void put_hex(uint64_t v);
void fail(const char *msg) __attribute__((noreturn));
void set_gate(unsigned vec, uint64_t handler);
void calibrate_tsc(void);
void announce_begin(const char *name, bool settle);

/* ---------------------------------------------------- exported by devices.c */

/* event=samples lines: a[i] - (b ? b[i] : base), 64 a line */
void put_samples(const char *name, const char *kind, const char *unit, const uint64_t *a,
		 const uint64_t *b, uint64_t base, uint64_t n);

enum dev_op { DEV_MSI, DEV_DMA, NET_RX, NET_TX };
void dev_run_op(enum dev_op op, const char *name, uint64_t count);

#endif
