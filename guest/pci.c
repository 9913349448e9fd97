/*
 * hil probe guest: PCI for the device ops.
 *
 * Bus 0 and what lies behind its bridges, through the legacy configuration ports
 * (0xcf8/0xcfc: q35, where SeaBIOS assigned the BARs) or else ECAM (microvm with pcie=on,
 * where the probe assigns the BARs itself).  BARs are mapped uncached with 2 MiB pages
 * built from a small pool.  Interrupts: MSI / MSI-X, fixed delivery, physical destination
 * APIC ID 0 (the BSP, in x2APIC mode).  Nothing here runs inside the window.
 */
#include "probe.h"
#include "pci.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define PAGE 4096ull
#define PCI_COMMAND 0x04
#define PCI_CMD_MEM (1u << 1)
#define PCI_CMD_MASTER (1u << 2)
#define PCI_CMD_INTX_DISABLE (1u << 10)
#define PCI_STATUS_CAPS (1u << 4)
#define CAP_MSI 0x05
#define CAP_MSIX 0x11
#define MSI_ADDR 0xfee00000u /* | dest APIC ID 0 << 12: physical, fixed */

static uint64_t *pt_pool; /* page-table pages for the MMIO mappings */
static unsigned pt_pages, pt_used;

void mem_zero(void *p, uint64_t n)
{
	volatile uint8_t *b = p;
	while (n--)
		*b++ = 0;
}

void mmio_map_init(uint64_t *pool, unsigned pages)
{
	pt_pool = pool;
	pt_pages = pages;
}

/* Identity-map [base, base + size) uncached with 2 MiB pages.  The first GiB is RAM,
 * mapped by entry.S; MMIO the firmware put there stays mapped write-back (emulated anyway). */
void map_mmio(uint64_t base, uint64_t size)
{
	uint64_t *pml4;
	__asm__ volatile("mov %%cr3, %0" : "=r"(pml4));
	pml4 = (uint64_t *)((uintptr_t)pml4 & ~0xfffull);
	for (uint64_t a = base & ~0x1fffffull; a < base + size; a += 0x200000) {
		if (a + 0x200000 <= MAPPED_LIMIT)
			continue;
		if (a >> 48)
			fail("bar-beyond-48-bit");
		uint64_t *table = pml4;
		for (int level = 39; level > 21; level -= 9) {
			uint64_t *e = &table[(a >> level) & 511];
			if (!(*e & 1)) {
				if (pt_used == pt_pages)
					fail("out-of-page-tables");
				uint64_t *page = pt_pool + 512 * pt_used++;
				mem_zero(page, PAGE);
				*e = (uint64_t)(uintptr_t)page | 0x23; /* present, writable, accessed */
			} else if (*e & 0x80) {
				fail("mmio-overlaps-large-page");
			}
			table = (uint64_t *)(uintptr_t)(*e & 0x000ffffffffff000ull);
		}
		/* present, writable, PWT, PCD, accessed, dirty, 2 MiB */
		table[(a >> 21) & 511] = a | 0xfb;
	}
	uint64_t cr3;
	__asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
}

/* ---------------------------------------------------------------- PCI */

/* Configuration space: the legacy mechanism (0xcf8/0xcfc: pc, q35) when it answers, else
 * ECAM at the base ACPI's MCFG table gives (microvm with pcie=on has no 0xcf8). */
#define MICROVM_ECAM_BASE 0xe0000000ull
#define GPEX_HOST_ID 0x00081b36u /* 1b36:0008, QEMU's generic PCIe host bridge */
static volatile uint8_t *ecam;
static unsigned ecam_buses;

static void pci_select(uint32_t bdf, uint32_t off)
{
	outl(0xcf8, 0x80000000u | bdf << 8 | (off & 0xfc));
}

ALWAYS_INLINE volatile uint8_t *ecam_at(uint32_t bdf, uint32_t off)
{
	return ecam + ((uint64_t)bdf << 12) + (off & 0xfff);
}

uint32_t pci_read32(uint32_t bdf, uint32_t off)
{
	if (ecam)
		return (bdf >> 8) < ecam_buses ? *(volatile uint32_t *)ecam_at(bdf, off & ~3u) : 0xffffffffu;
	pci_select(bdf, off);
	return inl(0xcfc);
}

static uint16_t pci_read16(uint32_t bdf, uint32_t off)
{
	if (ecam)
		return (uint16_t)(pci_read32(bdf, off) >> (8 * (off & 2)));
	pci_select(bdf, off);
	return inw((uint16_t)(0xcfc + (off & 2)));
}

uint8_t pci_read8(uint32_t bdf, uint32_t off)
{
	if (ecam)
		return (uint8_t)(pci_read32(bdf, off) >> (8 * (off & 3)));
	pci_select(bdf, off);
	return inb((uint16_t)(0xcfc + (off & 3)));
}

static void pci_write32(uint32_t bdf, uint32_t off, uint32_t v)
{
	if (ecam) {
		*(volatile uint32_t *)ecam_at(bdf, off & ~3u) = v;
		return;
	}
	pci_select(bdf, off);
	outl(0xcfc, v);
}

static void pci_write16(uint32_t bdf, uint32_t off, uint16_t v)
{
	if (ecam) {
		*(volatile uint16_t *)ecam_at(bdf, off & ~1u) = v;
		return;
	}
	pci_select(bdf, off);
	outw((uint16_t)(0xcfc + (off & 2)), v);
}

static bool acpi_sum_ok(const volatile uint8_t *p, uint32_t len)
{
	uint8_t sum = 0;
	for (uint32_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + p[i]);
	return sum == 0;
}

static bool sig_is(const volatile uint8_t *p, const char *sig)
{
	for (unsigned i = 0; sig[i]; i++)
		if (p[i] != (uint8_t)sig[i])
			return false;
	return true;
}

static uint64_t rd_le(const volatile uint8_t *p, unsigned n)
{
	uint64_t v = 0;
	while (n--)
		v = v << 8 | p[n];
	return v;
}

/* The first MCFG allocation (segment 0) from the ACPI tables, or false. */
static bool acpi_find_ecam(uint64_t *base, unsigned *buses)
{
	const volatile uint8_t *rsdp = NULL;
	for (uintptr_t a = 0xe0000; a < 0x100000 && !rsdp; a += 16)
		if (sig_is((const volatile uint8_t *)a, "RSD PTR ") && acpi_sum_ok((const volatile uint8_t *)a, 20))
			rsdp = (const volatile uint8_t *)a;
	if (!rsdp)
		return false;
	uint64_t sdt = rd_le(rsdp + 16, 4);
	unsigned entry = 4;
	if (rsdp[15] >= 2 && rd_le(rsdp + 24, 8)) {
		sdt = rd_le(rsdp + 24, 8);
		entry = 8;
	}
	if (!sdt || sdt >= MAPPED_LIMIT)
		return false;
	const volatile uint8_t *t = (const volatile uint8_t *)(uintptr_t)sdt;
	uint32_t len = (uint32_t)rd_le(t + 4, 4);
	for (uint32_t off = 36; off + entry <= len; off += entry) {
		uint64_t tab = rd_le(t + off, entry);
		if (!tab || tab >= MAPPED_LIMIT)
			continue;
		const volatile uint8_t *m = (const volatile uint8_t *)(uintptr_t)tab;
		if (!sig_is(m, "MCFG") || rd_le(m + 4, 4) < 44 + 16)
			continue;
		*base = rd_le(m + 44, 8);
		*buses = (unsigned)m[44 + 11] - m[44 + 10] + 1;
		return m[44 + 10] == 0 && *base;
	}
	return false;
}

static const char *pci_init_access(void)
{
	if ((pci_read32(0, 0) & 0xffff) != 0xffff)
		return "cf8";
	uint64_t base;
	unsigned buses;
	bool from_acpi = acpi_find_ecam(&base, &buses);
	if (!from_acpi) {
		/* QEMU's microvm (pcie=on) lists no MCFG: its ECAM sits at a fixed address, and
		 * is taken only when function 00:00.0 there is QEMU's PCIe host bridge. */
		base = MICROVM_ECAM_BASE;
		buses = 1;
	}
	if (buses > 16)
		buses = 16; /* nothing here sits behind more than a few bridges */
	map_mmio(base, (uint64_t)buses << 20);
	ecam = (volatile uint8_t *)(uintptr_t)base;
	ecam_buses = buses;
	if (!from_acpi && pci_read32(0, 0) != GPEX_HOST_ID) {
		ecam = NULL;
		return NULL;
	}
	return "ecam";
}

#define MAX_FUNCS 64
static struct pci_func {
	uint32_t bdf;
	uint16_t vendor, device;
} funcs[MAX_FUNCS];
static unsigned n_funcs;
static bool pci_scanned;

static void pci_scan_bus(unsigned bus, unsigned depth)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		for (unsigned fn = 0; fn < 8; fn++) {
			uint32_t bdf = bus << 8 | dev << 3 | fn;
			uint32_t id = pci_read32(bdf, 0);
			if ((id & 0xffff) == 0xffff) {
				if (fn == 0)
					break;
				continue;
			}
			uint8_t hdr = pci_read8(bdf, 0x0e);
			if (n_funcs < MAX_FUNCS) {
				funcs[n_funcs].bdf = bdf;
				funcs[n_funcs].vendor = (uint16_t)id;
				funcs[n_funcs].device = (uint16_t)(id >> 16);
				n_funcs++;
			}
			if ((hdr & 0x7f) == 1 && depth < 8) { /* PCI-to-PCI bridge */
				unsigned secondary = pci_read8(bdf, 0x19);
				if (secondary > bus)
					pci_scan_bus(secondary, depth + 1);
			}
			if (fn == 0 && !(hdr & 0x80))
				break; /* single-function device */
		}
	}
}

static const char *pci_access;

const char *pci_config_mechanism(void)
{
	return pci_access ? pci_access : "none";
}

bool pci_find(uint16_t vendor, uint16_t device, uint32_t *bdf)
{
	if (!pci_scanned) {
		pci_access = pci_init_access();
		if (pci_access)
			pci_scan_bus(0, 0);
		pci_scanned = true;
	}
	for (unsigned i = 0; i < n_funcs; i++)
		if (funcs[i].vendor == vendor && funcs[i].device == device) {
			*bdf = funcs[i].bdf;
			return true;
		}
	return false;
}

/* Offset of the first capability of `id` at or after list position `from` (0: the start). */
unsigned pci_cap(uint32_t bdf, uint8_t id, unsigned from)
{
	if (!(pci_read16(bdf, 0x06) & PCI_STATUS_CAPS))
		return 0;
	unsigned pos = from ? pci_read8(bdf, from + 1) : pci_read8(bdf, 0x34);
	for (unsigned guard = 0; pos >= 0x40 && guard < 48; guard++) {
		if (pci_read8(bdf, pos) == id)
			return pos;
		pos = pci_read8(bdf, pos + 1);
	}
	return 0;
}

/* A memory BAR's address (64-bit BARs included); 0 for an I/O or unassigned BAR. */
uint64_t pci_bar(uint32_t bdf, unsigned idx)
{
	if (idx > 5)
		return 0;
	uint32_t lo = pci_read32(bdf, 0x10 + 4 * idx);
	if (lo & 1)
		return 0;
	uint64_t addr = lo & ~0xfull;
	if ((lo & 6) == 4 && idx < 5)
		addr |= (uint64_t)pci_read32(bdf, 0x14 + 4 * idx) << 32;
	return addr;
}

/* With ECAM no firmware assigned the BARs (microvm's qboot does not): give every memory BAR
 * of the function an address in the host bridge's 32-bit window, which QEMU's microvm puts
 * right below ECAM (0xc0000000-0xdfffffff under ECAM at 0xe0000000). */
#define GPEX_MMIO32_SIZE 0x20000000ull
static uint64_t mmio32_next;

void pci_assign_bars(uint32_t bdf)
{
	if (!ecam)
		return;
	if (!mmio32_next)
		mmio32_next = (uintptr_t)ecam - GPEX_MMIO32_SIZE;
	uint16_t cmd = pci_read16(bdf, PCI_COMMAND);
	pci_write16(bdf, PCI_COMMAND, (uint16_t)(cmd & ~(PCI_CMD_MEM | 1u))); /* decoding off while sizing */
	for (unsigned i = 0; i < 6; i++) {
		unsigned off = 0x10 + 4 * i;
		uint32_t lo = pci_read32(bdf, off);
		bool is64 = (lo & 7) == 4;
		if (lo & 1)
			continue;
		if (lo & ~0xfu) { /* already assigned */
			i += is64;
			continue;
		}
		pci_write32(bdf, off, 0xffffffffu);
		uint32_t mask = pci_read32(bdf, off) & ~0xfu;
		if (!mask) {
			i += is64;
			continue;
		}
		uint64_t size = (uint64_t)(~mask) + 1;
		uint64_t addr = (mmio32_next + size - 1) & ~(size - 1);
		if (addr + size > (uintptr_t)ecam)
			fail("pci-mmio-window-full");
		mmio32_next = addr + size;
		pci_write32(bdf, off, (uint32_t)addr);
		if (is64)
			pci_write32(bdf, off + 4, 0);
		i += is64;
	}
	pci_write16(bdf, PCI_COMMAND, cmd);
}

void pci_enable(uint32_t bdf)
{
	uint16_t cmd = pci_read16(bdf, PCI_COMMAND);
	pci_write16(bdf, PCI_COMMAND, (uint16_t)(cmd | PCI_CMD_MEM | PCI_CMD_MASTER | PCI_CMD_INTX_DISABLE));
}

void pci_msi_enable(uint32_t bdf, uint8_t vector)
{
	unsigned cap = pci_cap(bdf, CAP_MSI, 0);
	if (!cap)
		fail("device-has-no-msi");
	uint16_t ctrl = pci_read16(bdf, cap + 2);
	pci_write32(bdf, cap + 4, MSI_ADDR);
	if (ctrl & 0x80) { /* 64-bit address */
		pci_write32(bdf, cap + 8, 0);
		pci_write16(bdf, cap + 12, vector);
	} else {
		pci_write16(bdf, cap + 8, vector);
	}
	pci_write16(bdf, cap + 2, (uint16_t)((ctrl & ~0x70u) | 1)); /* one vector, enabled */
}

/* MSI-X with entry i -> vectors[i] (fixed, APIC ID 0, unmasked); other entries stay masked. */
void pci_msix_enable(uint32_t bdf, const uint8_t *vectors, unsigned n)
{
	unsigned cap = pci_cap(bdf, CAP_MSIX, 0);
	if (!cap)
		fail("device-has-no-msix");
	uint16_t ctrl = pci_read16(bdf, cap + 2);
	unsigned entries = (ctrl & 0x7ffu) + 1;
	if (entries < n)
		fail("msix-table-too-small");
	uint32_t tbl = pci_read32(bdf, cap + 4);
	uint64_t bar = pci_bar(bdf, tbl & 7);
	if (!bar)
		fail("msix-bar-not-assigned");
	uint64_t base = bar + (tbl & ~7u);
	map_mmio(base, 16ull * entries);
	pci_write16(bdf, cap + 2, (uint16_t)(ctrl | 0xc000)); /* enable, function mask */
	volatile uint32_t *t = (volatile uint32_t *)(uintptr_t)base;
	for (unsigned i = 0; i < n; i++) {
		t[4 * i + 0] = MSI_ADDR;
		t[4 * i + 1] = 0;
		t[4 * i + 2] = vectors[i];
		t[4 * i + 3] = 0;
	}
	pci_write16(bdf, cap + 2, (uint16_t)((ctrl | 0x8000) & ~0x4000));
}
