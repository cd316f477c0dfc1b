package cqlready;

import java.io.File;
import java.lang.instrument.Instrumentation;
import java.net.URI;

/**
 * The -javaagent shim: loads libcqlready.so and starts the same native agent
 * with the same option string, for launchers that only take -javaagent:.
 *
 * <pre>
 *   -javaagent:/usr/lib/cqlready/cqlready-shim.jar=port=9042,log=warn
 * </pre>
 *
 * The library is the libcqlready.so next to the jar, or the path in the system
 * property cqlready.lib. No dependencies, Java 8 bytecode; nothing else runs in
 * Java: the agent's own thread is native.
 */
public final class Shim {
    private Shim() {}

    /** Starts the native agent; returns null, or why the options were refused. */
    private static native String start(String options);

    public static void premain(String options, Instrumentation inst) {
        try {
            run(options);
        } catch (RuntimeException e) {
            // At start-up a refusal stops the JVM cleanly (exit 1), as a bad
            // -agentpath does, rather than by the launcher's abort.
            System.err.println(e.getMessage());
            System.exit(1);
        }
    }

    /** Loaded into a running JVM: a refusal is reported to the loader, the JVM runs on. */
    public static void agentmain(String options, Instrumentation inst) {
        run(options);
    }

    private static void run(String options) {
        String lib = System.getProperty("cqlready.lib");
        if (lib == null) {
            lib = besideJar();
        }
        try {
            System.load(lib);
        } catch (UnsatisfiedLinkError e) {
            throw new IllegalStateException("cqlready: cannot load " + lib + ": " + e.getMessage()
                    + " (put libcqlready.so next to the jar or set -Dcqlready.lib=PATH)", e);
        }
        String error = start(options == null ? "" : options);
        if (error != null) {
            throw new IllegalArgumentException("cqlready: " + error);
        }
    }

    private static String besideJar() {
        try {
            URI jar = Shim.class.getProtectionDomain().getCodeSource().getLocation().toURI();
            return new File(new File(jar).getParentFile(), "libcqlready.so").getAbsolutePath();
        } catch (Exception e) {
            throw new IllegalStateException("cqlready: cannot tell where the shim jar is: " + e
                    + " (set -Dcqlready.lib=PATH)", e);
        }
    }
}
