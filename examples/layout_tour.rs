// A tour of how a running Rust program is laid out in memory: each value is placed on
// purpose in one part of the address space, and the program prints where it landed.
// Built with plain rustc; `memcensus map -- ./layout_tour_rs` shows the same values in the
// segments memcensus finds.
#![allow(unused_unsafe)]
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::thread;

// Initialised, writable static data: .data.
static mut INITIALISED_TABLE: [u32; 4096] = {
    let mut t = [0u32; 4096];
    t[0] = 1;
    t[1] = 2;
    t
};
// Zero-initialised static data: .bss (page-aligned so that it starts in the anonymous bss
// mapping rather than in the last file page).
#[repr(align(4096))]
struct PageAligned([u8; 1 << 20]);
static mut ZEROED_BUFFER: PageAligned = PageAligned([0; 1 << 20]);
// Read-only data: .rodata.
static READ_ONLY_TEXT: [u8; 16384] = {
    let mut t = [b'r'; 16384];
    t[0] = b'R';
    t
};

fn show(what: &str, addr: usize, expect: &str) {
    println!("  {:<28} {:#14x}   expected in {}", what, addr, expect);
}

fn main() {
    let wait = std::env::args().nth(1).as_deref() == Some("--wait");
    let on_main_stack = black_box([1u8; 256]);
    let small = black_box(Box::new([0u8; 64]));
    let mut large = black_box(vec![0u8; 8 << 20]);
    for b in large.iter_mut().take(1 << 20) {
        *b = 7;
    }
    unsafe {
        ZEROED_BUFFER.0[0] = 1;
        INITIALISED_TABLE[2] = 3;
    }
    println!("layout tour (Rust), pid {}", std::process::id());
    show("INITIALISED_TABLE", unsafe { std::ptr::addr_of!(INITIALISED_TABLE) } as usize, "data (.data)");
    show("ZEROED_BUFFER", unsafe { std::ptr::addr_of!(ZEROED_BUFFER) } as usize, "bss (.bss)");
    show("READ_ONLY_TEXT", black_box(&READ_ONLY_TEXT).as_ptr() as usize, "rodata (.rodata)");
    show("main()", main as fn() as usize, "text (.text)");
    show("local in main()", on_main_stack.as_ptr() as usize, "stack (main thread)");
    show("Box<[u8; 64]>", small.as_ptr() as usize, "heap ([heap], the brk heap)");
    show("vec![0u8; 8 MiB]", large.as_ptr() as usize, "anon (a private mapping)");

    let barrier = Arc::new(Barrier::new(3));
    let mut handles = Vec::new();
    for (i, (name, size)) in [("tour-small", 256usize << 10), ("tour-large", 1 << 20)].iter().enumerate() {
        let b = barrier.clone();
        let label = format!("stack of thread {}", name);
        handles.push(
            thread::Builder::new()
                .name(name.to_string())
                .stack_size(*size)
                .spawn(move || {
                    let local = black_box([i as u8; 512]);
                    let from_arena = black_box(Box::new([0u8; 4096]));
                    show(&label, local.as_ptr() as usize, "stack (tid of this thread)");
                    show(&format!("Box in thread {}", i), from_arena.as_ptr() as usize, "arena");
                    b.wait();
                    loop {
                        thread::park();
                    }
                })
                .unwrap(),
        );
    }
    barrier.wait();
    if wait {
        println!("waiting; press Enter to exit");
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
    }
    black_box(&large);
    std::process::exit(0);
}
