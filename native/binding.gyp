# Lives in native/ rather than the package root: node-gyp builds into ./build and its
# rebuild starts with `rm -rf build`, which at the root is TypeScript's outDir (build/src,
# the package's compiled code). Here the addon lands in native/build/Release.
{
  "targets": [
    {
      "target_name": "multiproc",
      "sources": ["multiproc.cc"],
      "cflags_cc": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers", "-fvisibility=hidden"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "libraries": ["-lrt", "-lpthread"]
    }
  ]
}
