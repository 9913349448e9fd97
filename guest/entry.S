/*
 * hil probe guest: boot entry, GDT, identity page tables, stack and the
 * out-of-window interrupt stubs.
 *
 * One 32-bit entry point serves both boot protocols QEMU's -kernel can use:
 *   - multiboot v1 (pc/q35): eax = 0x2BADB002, ebx = multiboot info
 *   - PVH (microvm + qboot): ebx = struct hvm_start_info (magic 0x336ec578)
 * The protocol is told apart from eax/ebx at run time, so whichever loader
 * QEMU picks, the probe still finds its command line.
 *
 * The entry switches to 64-bit long mode with the first 1 GiB identity-mapped
 * by 2 MiB pages (accessed/dirty bits preset so the CPU never writes page
 * table entries later) and calls probe_main(magic, info).
 */

#define MB1_HEADER_MAGIC 0x1BADB002
#define MB1_HEADER_FLAGS 0x00000002      /* ask for memory info; no a.out kludge: QEMU loads the ELF */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

#define SEL_CODE64 0x08
#define SEL_DATA   0x10
#define SEL_CODE32 0x18

#define STACK_SIZE 16384

/* ---- multiboot v1 header: must sit in the first 8 KiB of the file ----
 * QEMU tries multiboot before PVH on every machine (microvm included), so
 * the PVH-only variant (PROBE_PVH_ONLY) keeps the same layout but blanks the
 * magic, which makes QEMU fall through to the PVH note. */
	.section .mbheader, "a"
	.balign 4
mb1_header:
#ifdef PROBE_PVH_ONLY
	.long 0
#else
	.long MB1_HEADER_MAGIC
#endif
	.long MB1_HEADER_FLAGS
	.long -(MB1_HEADER_MAGIC + MB1_HEADER_FLAGS)

/* ---- PVH entry note (name "Xen", type 18, 32-bit physical entry) ---- */
	.section .note.Xen, "a"
	.balign 4
	.long 4                 /* namesz: "Xen\0" */
	.long 8                 /* descsz: entry padded to 8 bytes, readable as u32 or u64 */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.quad entry32

/* Flat data segments (32-bit code). */
	.macro LOAD_DATA_SEGMENTS32
	mov	$SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	mov	%eax, %fs
	mov	%eax, %gs
	.endm

/* From 32-bit protected mode into long mode on the identity page tables, at \target. */
	.macro ENTER_LONG_MODE target
	mov	%cr4, %eax
	or	$0x20, %eax             /* CR4.PAE */
	mov	%eax, %cr4
	mov	$pml4, %eax
	mov	%eax, %cr3
	mov	$0xC0000080, %ecx       /* IA32_EFER */
	rdmsr
	or	$0x100, %eax            /* EFER.LME */
	wrmsr
	mov	%cr0, %eax
	or	$0x80000001, %eax       /* CR0.PG | CR0.PE */
	mov	%eax, %cr0
	ljmp	$SEL_CODE64, $\target
	.endm

/* 64-bit data segments, then the stack at \top. */
	.macro LONG_MODE_STACK top
	mov	$SEL_DATA, %eax
	mov	%eax, %ds
	mov	%eax, %es
	mov	%eax, %ss
	xor	%eax, %eax
	mov	%eax, %fs
	mov	%eax, %gs
	mov	$\top, %rsp
	.endm

/* ---- 32-bit entry and trampoline to long mode ---- */
	.section .text.boot, "ax"
	.code32
	.globl entry32
entry32:
	cli
	cld
	mov	%eax, %edi              /* boot magic (multiboot) */
	mov	%ebx, %esi              /* boot info pointer (multiboot or PVH) */
	lgdt	gdt_desc
	LOAD_DATA_SEGMENTS32
	ljmp	$SEL_CODE32, $1f
1:
	mov	$stack_top, %esp
	ENTER_LONG_MODE entry64

	.code64
entry64:
	LONG_MODE_STACK stack_top
	mov	%edi, %edi              /* upper halves are undefined after the mode switch */
	mov	%esi, %esi
	call	probe_main
	.globl probe_halt_forever
probe_halt_forever:
	cli
	hlt
	jmp	probe_halt_forever

/* ---- application processor start-up (the kicker vCPU of the ipi-race op) ----
 * probe.c copies ap_trampoline..ap_trampoline_end to AP_TRAMPOLINE (0x8000) and sends
 * INIT, SIPI(0x08): the AP starts in real mode at 0800:0000, loads the GDT, and takes the
 * BSP's road to long mode with its own stack, then calls ap_main(). */
	.section .rodata
	.globl ap_trampoline, ap_trampoline_end
	.code16
ap_trampoline:
	cli
	mov	%cs, %ax
	mov	%ax, %ds
	lgdtl	ap_gdt_desc - ap_trampoline
	mov	%cr0, %eax
	or	$1, %eax                /* CR0.PE */
	mov	%eax, %cr0
	.byte	0x66, 0xea              /* ljmpl $SEL_CODE32, $ap_entry32 */
	.long	ap_entry32
	.word	SEL_CODE32
	.balign 8
ap_gdt_desc:
	.word	gdt_end - gdt - 1
	.long	gdt
ap_trampoline_end:

	.section .text.boot, "ax"
	.code32
ap_entry32:
	LOAD_DATA_SEGMENTS32
	ENTER_LONG_MODE ap_entry64

	.code64
ap_entry64:
	LONG_MODE_STACK ap_stack_top
	call	ap_main
	jmp	probe_halt_forever

/* ---- interrupt stubs (outside the window) ---- */
	.text
	.macro EXC_STUB vec
exc_stub_\vec:
	.if (\vec == 8) || (\vec == 10) || (\vec == 11) || (\vec == 12) || (\vec == 13) || (\vec == 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
	.else
	push	$0                      /* no error code: keep the frame uniform */
	.endif
	push	$\vec
	jmp	exc_common
	.endm

	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	EXC_STUB \v
	.endr

exc_common:
	mov	0(%rsp), %rdi           /* vector */
	mov	8(%rsp), %rsi           /* error code */
	mov	16(%rsp), %rdx          /* faulting rip */
	and	$-16, %rsp
	call	probe_exception
	jmp	probe_halt_forever

	.globl probe_unexpected_irq
probe_unexpected_irq:
	mov	0(%rsp), %rdi           /* interrupted rip */
	and	$-16, %rsp
	call	probe_unexpected_interrupt
	jmp	probe_halt_forever

	.globl probe_spurious_isr
probe_spurious_isr:                     /* APIC spurious vector: no EOI */
	iretq

	.section .rodata
	.balign 8
	.globl probe_exc_stubs
probe_exc_stubs:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_stub_\v
	.endr

/* ---- GDT, page tables, stack (all inside the loaded, prefaulted image) ---- */
	.data
	.balign 16
gdt:
	.quad 0
	.quad 0x00af9b000000ffff        /* 0x08: 64-bit code, accessed bit preset */
	.quad 0x00cf93000000ffff        /* 0x10: flat data, accessed bit preset */
	.quad 0x00cf9b000000ffff        /* 0x18: flat 32-bit code */
gdt_end:
	.balign 8
	.word 0, 0, 0
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

	.balign 4096
pml4:
	.quad pdpt + 0x23               /* present, writable, accessed */
	.fill 511, 8, 0
pdpt:
	.quad pd + 0x23
	.fill 511, 8, 0
pd:                                     /* 512 x 2 MiB = first 1 GiB, identity */
	.set i, 0
	.rept 512
	.quad (i << 21) | 0xe3          /* present, writable, accessed, dirty, 2 MiB */
	.set i, i + 1
	.endr

	.section .bss
	.balign 4096
	.globl probe_stack_bottom, probe_stack_top
probe_stack_bottom:
	.space STACK_SIZE
stack_top:
probe_stack_top:
	.balign 16
ap_stack_bottom:
	.space STACK_SIZE
ap_stack_top:
