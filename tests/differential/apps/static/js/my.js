console.log("my.js");
