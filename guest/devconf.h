/* hil probe guest: constants the device ops' C code and their interrupt handlers (window.S) share. */
#ifndef HIL_DEVCONF_H
#define HIL_DEVCONF_H

#define DEV_MAX_SAMPLES 4096   /* TSC samples kept per op; later interrupts are counted only */
#define EDU_VECTOR 0x70        /* edu's MSI (dev-msi and dev-dma) */
#define NET_RX_VECTOR 0x71     /* virtio-net MSI-X table entry 0: the receive queue */
#define NET_TX_VECTOR 0x72     /* virtio-net MSI-X table entry 1: the transmit queue */

#endif
