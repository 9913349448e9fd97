/* hil probe guest: PCI configuration, BAR mapping, MSI / MSI-X (pci.c), for devices.c. */
#ifndef HIL_PCI_H
#define HIL_PCI_H

#include <stdbool.h>
#include <stdint.h>

void mmio_map_init(uint64_t *pool, unsigned pages); /* page-table pages for map_mmio */
void map_mmio(uint64_t base, uint64_t size);        /* identity, uncached, 2 MiB pages */
void mem_zero(void *p, uint64_t n);                  /* byte loop: never turned into a memset call */

bool pci_find(uint16_t vendor, uint16_t device, uint32_t *bdf);  /* scans once */
const char *pci_config_mechanism(void);                           /* "cf8", "ecam" or "none" */
uint32_t pci_read32(uint32_t bdf, uint32_t off);
uint8_t pci_read8(uint32_t bdf, uint32_t off);
unsigned pci_cap(uint32_t bdf, uint8_t id, unsigned from);       /* 0: none */
uint64_t pci_bar(uint32_t bdf, unsigned idx);                     /* 0: I/O or unassigned */
void pci_assign_bars(uint32_t bdf);                               /* ECAM only: no firmware did */
void pci_enable(uint32_t bdf);                                    /* memory, bus master, no INTx */
void pci_msi_enable(uint32_t bdf, uint8_t vector);
void pci_msix_enable(uint32_t bdf, const uint8_t *vectors, unsigned n);

#endif
